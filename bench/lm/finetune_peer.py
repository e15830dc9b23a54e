"""bench/lm stage 5, the peer: the same LoRA recipe as hone's defaults in transformers + peft, on the same
curated records and the same frozen test set of a hone project (read from `hone data show --json` and the
project's store), then greedy answers to the test prompts.

Mirrors hone: the chat template from the GGUF file with its default system message, loss on the
assistant's tokens and its end-of-turn token only (found by rendering the prompt with the generation
marker and diffing token ids), sequences cut from the start to `max_length`, right padding, AdamW
(no weight decay), linear warm-up over 3% of the steps then linear decay, gradient norm clipped at 1,
LoRA rank 16, alpha 32, dropout 0.05 on q/k/v/o. Greedy decoding, `max_new_tokens`, batches of 8
prompts of similar length, left-padded.

    python finetune_peer.py MODEL.gguf RECORDS.json TEST_IDS.json OUT_DIR THREADS
Writes OUT_DIR/peer.json (step times, peak RSS, losses) and OUT_DIR/peer-answers.jsonl.
"""
import json
import os
import pathlib
import random
import resource
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

EPOCHS, LR, BATCH, MAX_LENGTH, MAX_NEW = 1, 2e-4, 8, 256, 64
WARMUP_RATIO, CLIP = 0.03, 1.0


def encode(tok, prompt, target, eos):
    msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": target}]
    full = tok.apply_chat_template(msgs, tokenize=False)
    before = tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    ids = tok(full, add_special_tokens=False)["input_ids"]
    pre = tok(before, add_special_tokens=False)["input_ids"]
    assert ids[: len(pre)] == pre, "the prompt is not a token prefix of the conversation"
    span = ids[len(pre):]
    end = span.index(eos) + 1 if eos in span else len(span)
    train = [False] * len(pre) + [True] * end + [False] * (len(span) - end)
    if len(ids) > MAX_LENGTH:
        cut = len(ids) - MAX_LENGTH
        ids, train = ids[cut:], train[cut:]
    train[0] = False
    return ids, train


def main():
    model_path, records_path, test_path, out_dir, threads = sys.argv[1:6]
    torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    out = pathlib.Path(out_dir)
    gguf = pathlib.Path(model_path)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    records = json.load(open(records_path))
    test_ids = set(json.load(open(test_path)))
    train = [r for r in records if r["id"] not in test_ids]
    test = [r for r in records if r["id"] in test_ids]
    examples = [encode(tok, r["text"], r["label"], eos) for r in train]

    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                             task_type="CAUSAL_LM"))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    steps_per_epoch = (len(examples) + BATCH - 1) // BATCH
    total = steps_per_epoch * EPOCHS
    warmup = round(WARMUP_RATIO * total)

    def lr_at(step):
        if warmup > 0 and step < warmup:
            return LR * (step + 1) / warmup
        return LR * max(0.0, (total - step) / max(1, total - warmup))

    model.train()
    step_seconds, losses, step = [], [], 0
    rng = random.Random(0)
    for _ in range(EPOCHS):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for b in range(0, len(order), BATCH):
            t0 = time.perf_counter()
            batch = [examples[i] for i in order[b:b + BATCH]]
            longest = max(len(ids) for ids, _ in batch)
            inp = torch.full((len(batch), longest), pad, dtype=torch.long)
            lab = torch.full((len(batch), longest), -100, dtype=torch.long)
            att = torch.zeros((len(batch), longest), dtype=torch.long)
            for r, (ids, tr) in enumerate(batch):
                inp[r, : len(ids)] = torch.tensor(ids)
                att[r, : len(ids)] = 1
                lab[r, : len(ids)] = torch.tensor([t if m else -100 for t, m in zip(ids, tr)])
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            # transformers shifts the labels: position j predicts token j + 1, masked where -100.
            loss = model(input_ids=inp, attention_mask=att, labels=lab).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, CLIP)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step_seconds.append(time.perf_counter() - t0)
            losses.append(loss.item())
            step += 1
            print(f"peer step {step}/{total} loss {losses[-1]:.3f} {step_seconds[-1]:.1f}s", file=sys.stderr, flush=True)
    train_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

    model.eval()
    tok.padding_side = "left"
    prompts = []
    for r in test:
        text = tok.apply_chat_template([{"role": "user", "content": r["text"]}], tokenize=False,
                                       add_generation_prompt=True)
        prompts.append((r, tok(text, add_special_tokens=False)["input_ids"]))
    prompts.sort(key=lambda p: len(p[1]))
    answers, t0 = [], time.perf_counter()
    with torch.no_grad():
        for b in range(0, len(prompts), BATCH):
            chunk = prompts[b:b + BATCH]
            longest = max(len(ids) for _, ids in chunk)
            inp = torch.full((len(chunk), longest), pad, dtype=torch.long)
            att = torch.zeros((len(chunk), longest), dtype=torch.long)
            for r, (_, ids) in enumerate(chunk):
                inp[r, longest - len(ids):] = torch.tensor(ids)
                att[r, longest - len(ids):] = 1
            gen = model.generate(input_ids=inp, attention_mask=att, max_new_tokens=MAX_NEW, do_sample=False,
                                 eos_token_id=eos, pad_token_id=pad)
            for (rec, _), row in zip(chunk, gen[:, longest:].tolist()):
                if eos in row:
                    row = row[: row.index(eos)]
                answers.append({"id": rec["id"], "reference": rec["label"],
                                "completion": tok.decode(row, skip_special_tokens=True).strip()})
    gen_seconds = time.perf_counter() - t0
    with open(out / "peer-answers.jsonl", "w") as f:
        for a in answers:
            f.write(json.dumps(a) + "\n")
    sorted_steps = sorted(step_seconds[1:] or step_seconds)
    json.dump({
        "threads": int(threads), "train_examples": len(examples), "test_examples": len(test),
        "steps": step, "step_seconds": step_seconds,
        "step_min": sorted_steps[0], "step_median": sorted_steps[len(sorted_steps) // 2],
        "train_seconds": sum(step_seconds), "peak_rss_mib_after_training": train_rss,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "generate_seconds": gen_seconds, "losses": losses,
        "torch": torch.__version__,
    }, open(out / "peer.json", "w"), indent=1)


if __name__ == "__main__":
    main()
