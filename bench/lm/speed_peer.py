"""bench/lm stage 3 peer: `transformers` greedy generation speed on the same GGUF (f32) and the same
prompt token ids (hone's, from stage 2): up to 64 new tokens, batches of BATCH prompts of similar
length, left-padded, stopping at EOS. Prints one JSON line like hone's `lm_speed`."""
import json, os, sys, time

import torch
from transformers import AutoModelForCausalLM

model, ids_file, batch, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
m = AutoModelForCausalLM.from_pretrained(os.path.dirname(model), gguf_file=os.path.basename(model),
                                         dtype=torch.float32)
m.eval()
eos = m.config.eos_token_id
prompts = [json.loads(l) for l in open(ids_file)][:n]
order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]["ids"]), i))
greedy = [None] * len(prompts)
t = time.perf_counter()
with torch.no_grad():
    for s in range(0, len(order), batch):
        chunk = order[s:s + batch]
        longest = max(len(prompts[i]["ids"]) for i in chunk)
        ids = torch.tensor([[eos] * (longest - len(prompts[i]["ids"])) + prompts[i]["ids"] for i in chunk])
        mask = torch.tensor([[0] * (longest - len(prompts[i]["ids"])) + [1] * len(prompts[i]["ids"]) for i in chunk])
        out = m.generate(ids, attention_mask=mask, max_new_tokens=64, do_sample=False,
                         pad_token_id=eos, eos_token_id=eos)
        for row, i in enumerate(chunk):
            toks = out[row, longest:].tolist()
            greedy[i] = toks[:toks.index(eos)] if eos in toks else toks
secs = time.perf_counter() - t
tokens = sum(len(g) for g in greedy)
print(json.dumps({"prompts": len(prompts), "batch": batch, "threads": os.environ.get("BENCH_THREADS"),
                  "tokens": tokens, "seconds": secs, "tokens_per_s": tokens / secs,
                  "greedy": [{"id": p["id"], "tokens": g} for p, g in zip(prompts, greedy)]}))
