"""bench/lm stage 2 peer: `transformers` loads the same GGUF (dequantized to f32); for every prompt
hone wrote (its token ids, so tokenization is out of the comparison), the next-token logits and a
greedy continuation of up to 64 tokens with the two best logits' gap at each step, as JSONL."""
import json, os, sys

import torch
from transformers import AutoModelForCausalLM

model, hone_jsonl, out = sys.argv[1:4]
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
m = AutoModelForCausalLM.from_pretrained(os.path.dirname(model), gguf_file=os.path.basename(model),
                                         dtype=torch.float32)
m.eval()
eos = m.config.eos_token_id
with open(out, "w") as f, torch.no_grad():
    for line in open(hone_jsonl):
        r = json.loads(line)
        ids = torch.tensor([r["ids"]])
        o = m(ids, use_cache=True)
        logits = o.logits[0, -1]
        past = o.past_key_values
        step, greedy, gaps = logits, [], []
        for _ in range(64):
            top = torch.topk(step, 2)
            gaps.append(float(top.values[0] - top.values[1]))
            nxt = int(top.indices[0])
            if nxt == eos:
                break
            greedy.append(nxt)
            o = m(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
            past, step = o.past_key_values, o.logits[0, -1]
        f.write(json.dumps({"id": r["id"], "logits": [round(float(x), 5) for x in logits],
                            "greedy": greedy, "gaps": gaps}) + "\n")
