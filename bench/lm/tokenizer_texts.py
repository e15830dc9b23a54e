"""bench/lm stage 1 input: texts for the tokenizer check, from the shared datasets (BANKING77, SMS Spam,
TREC, GSM8K questions and answers, Bitext messages and agent replies) plus chat renders of some of them
with the model's own template, as JSONL {"id", "text"}. Deterministic (every k-th record)."""
import json, sys

datasets, out, per = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 200
rows = []


def take(path, fields, k):
    lines = open(f"{datasets}/{path}").read().splitlines()
    step = max(1, len(lines) // k)
    for i, l in enumerate(lines[::step][:k]):
        r = json.loads(l)
        for f in fields:
            if r.get(f):
                rows.append({"id": f"{path}:{i}:{f}", "text": r[f]})


take("banking77/test.jsonl", ["text"], per)
take("sms_spam/all.jsonl", ["text"], per)
take("trec/test.jsonl", ["text"], per // 2)
take("gsm8k/test.jsonl", ["question", "answer"], per // 2)
take("bitext_customer_support/train_full.jsonl", ["text", "response"], per // 2)
# Chat renders (ChatML, as SmolLM2's template writes them): special tokens inside text.
for r in list(rows[: per // 2]):
    rows.append({"id": r["id"] + ":chat", "text": "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n" + r["text"] + "<|im_end|>\n<|im_start|>assistant\n"})
with open(out, "w") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
print(len(rows), "texts")
