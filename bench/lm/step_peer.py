"""bench/lm stages 5 and 6, step time: the peer's training step on BATCH synthetic sequences of LENGTH
tokens, as hone's `examples/lm_train_step` builds them. With a GGUF file (stage 5): LoRA (transformers +
peft, rank 16, alpha 32, dropout 0.05 on q/k/v/o), the second half of each sequence trainable. With a
Hugging Face directory (stage 6, `hone export` of a pre-trained run): a fresh LlamaForCausalLM of that
config, every weight trained, every token but the first (LM_STEP_TRAIN_ALL=1 on hone's side). Prints one
JSON line: seconds per step, min and median of all steps but the first, peak RSS.

    BENCH_THREADS=1 python step_peer.py MODEL.gguf|HF_DIR BATCH LENGTH STEPS
"""
import json
import os
import pathlib
import resource
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

model_path, batch, length, steps = sys.argv[1], *map(int, sys.argv[2:5])
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
torch.manual_seed(0)
gguf = pathlib.Path(model_path)
full = gguf.is_dir()
if full:
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(gguf), torch_dtype=torch.float32)
else:
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                             task_type="CAUSAL_LM"))
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
vocab = model.config.vocab_size
model.train()
times = []
for s in range(steps):
    ids = torch.randint(0, vocab, (batch, length))
    labels = ids.clone()
    if not full:
        labels[:, : length // 2] = -100
    t0 = time.perf_counter()
    loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    times.append(time.perf_counter() - t0)
rest = sorted(times[1:] or times)
print(json.dumps({"side": "peer", "batch": batch, "length": length, "threads": torch.get_num_threads(),
                  "step_seconds": times, "min": rest[0], "median": rest[len(rest) // 2],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
