"""bench/lm stage 6, the peer: pre-training the same decoder from scratch in PyTorch (transformers'
LlamaForCausalLM), with hone's tokenizer, hone's initial weights, hone's data order and hone's recipe,
so the two loss curves can be laid side by side step for step.

Everything is read from the hone project, not assumed:
- the shape (`config.json`) and the tokenizer (`tokenizer.json`) from `hone export` of the run;
- the training records: the curated version (`hone data show --json`), minus the frozen test set and
  the records the split dropped from training (`split_lineage`), in the version's order;
- each example as hone encodes it: `prompt\\ntarget<|im_end|>` (hone's plain template), cut from the
  start to `max_length`, every token but the first trained;
- the initial weights: hone's `Decoder::random`, replayed exactly (SplitMix64 from the run seed,
  Box-Muller normals times 0.02 for every matrix in tensor-name order, ones for the norms);
- the order: hone's epoch shuffle (SplitMix64 seeded by `seed ^ (epoch + 1) * 0xa0761d6478bd642f`,
  Fisher-Yates with multiply-shift draws), batches of `batch_size`;
- the step: loss summed over the batch's trained tokens divided by their count, AdamW (0.9, 0.999,
  1e-8, no weight decay), linear warm-up then linear decay to 0 (the step's learning rate computed
  before it), global gradient norm clipped at `max_grad_norm` as hone does.

    python pretrain_peer.py EXPORT_DIR RECORDS.json TEST_IDS.json DROPPED_IDS.json RECIPE.json THREADS OUT.json
RECIPE.json: {"seed", "epochs", "batch_size", "lr", "warmup_ratio", "max_grad_norm", "max_length"}.
Writes OUT.json: per-step loss, learning rate, gradient norm, trained tokens and seconds; peak RSS.
"""
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

M64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def splitmix_block(state, n):
    """The next `n` SplitMix64 outputs from `state` (vectorised: the k-th state is state + k * gamma)."""
    k = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(state) + k * np.uint64(GAMMA)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z, (state + n * GAMMA) & M64


class Rng:
    """hone_core::rng::SeededRng."""

    def __init__(self, seed):
        self.state = seed & M64

    def next_u64(self):
        self.state = (self.state + GAMMA) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def below(self, n):
        return (self.next_u64() * n) >> 64

    def shuffle(self, xs):
        for i in range(len(xs) - 1, 0, -1):
            j = self.below(i + 1)
            xs[i], xs[j] = xs[j], xs[i]

    def normals(self, n):
        """`n` draws of SeededRng::normal, as f32 times 0.02 (hone's initialisation)."""
        z, self.state = splitmix_block(self.state, 2 * n)
        u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        u1, u2 = 1.0 - u[0::2], u[1::2]
        x = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
        return x.astype(np.float32) * np.float32(0.02)


def tensor_names(layers, tied):
    names = ["model.embed_tokens.weight"]
    for i in range(layers):
        for part in ["input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                     "self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
                     "mlp.down_proj"]:
            names.append(f"model.layers.{i}.{part}.weight")
    names.append("model.norm.weight")
    if not tied:
        names.append("lm_head.weight")
    return names


def hone_init(model, cfg, seed):
    rng = Rng(seed)
    state = model.state_dict()
    with torch.no_grad():
        for name in tensor_names(cfg.num_hidden_layers, cfg.tie_word_embeddings):
            t = state[name]
            if t.dim() == 1:
                t.fill_(1.0)
            else:
                t.copy_(torch.from_numpy(rng.normals(t.numel()).reshape(t.shape)))


def epoch_order(n, seed, epoch):
    rng = Rng(seed ^ (((epoch + 1) * 0xA0761D6478BD642F) & M64))
    order = list(range(n))
    rng.shuffle(order)
    return order


def linear_schedule(peak, step, warmup, total):
    if step < warmup:
        return peak * step / max(warmup, 1)
    return peak * max(max(total - step, 0) / max(total - warmup, 1), 0.0)


def main():
    export, records_path, test_path, dropped_path, recipe_path, threads, out_path = sys.argv[1:8]
    torch.set_num_threads(int(threads))
    recipe = json.load(open(recipe_path))
    cfgj = json.load(open(os.path.join(export, "config.json")))
    cfg = LlamaConfig(
        vocab_size=cfgj["vocab_size"], hidden_size=cfgj["hidden_size"],
        intermediate_size=cfgj["intermediate_size"], num_hidden_layers=cfgj["num_hidden_layers"],
        num_attention_heads=cfgj["num_attention_heads"], num_key_value_heads=cfgj["num_key_value_heads"],
        max_position_embeddings=cfgj["max_position_embeddings"], rms_norm_eps=cfgj["rms_norm_eps"],
        rope_theta=cfgj.get("rope_theta", 10000.0), tie_word_embeddings=cfgj["tie_word_embeddings"],
        attention_bias=False, hidden_act="silu", attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg)
    hone_init(model, cfg, recipe["seed"])
    tok = Tokenizer.from_file(os.path.join(export, "tokenizer.json"))
    eos = tok.token_to_id("<|im_end|>")
    records = json.load(open(records_path))
    skip = set(json.load(open(test_path))) | set(json.load(open(dropped_path)))
    examples = []
    for r in records:
        if r["id"] in skip or r.get("label") is None:
            continue
        ids = tok.encode(f"{r['text']}\n{r['label']}<|im_end|>", add_special_tokens=False).ids
        assert ids[-1] == eos
        examples.append(ids[-recipe["max_length"]:])
    bs, epochs = recipe["batch_size"], recipe["epochs"]
    steps_per_epoch = math.ceil(len(examples) / bs)
    total = steps_per_epoch * epochs
    warmup = round(recipe["warmup_ratio"] * total)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=recipe["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    model.train()
    log, step = [], 0
    limit = int(os.environ.get("BENCH_PRETRAIN_STEPS", "0")) or total
    for epoch in range(epochs):
        order = epoch_order(len(examples), recipe["seed"], epoch)
        for b in range(0, len(order), bs):
            if step >= limit:
                break
            batch = [examples[i] for i in order[b:b + bs]]
            t0 = time.perf_counter()
            width = max(len(x) for x in batch)
            ids = torch.full((len(batch), width), eos, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, x in enumerate(batch):
                ids[i, :len(x)] = torch.tensor(x)
                mask[i, :len(x)] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            target, trained = ids[:, 1:], mask[:, 1:].bool()
            n = int(trained.sum())
            nll = torch.nn.functional.cross_entropy(logits[trained], target[trained], reduction="sum")
            loss = nll / n
            loss.backward()
            norm = float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params)))
            clip = recipe["max_grad_norm"] / (norm + 1e-6) if 0 < recipe["max_grad_norm"] < norm else 1.0
            lr = linear_schedule(recipe["lr"], step, warmup, total)
            for g in opt.param_groups:
                g["lr"] = lr
            if clip != 1.0:
                for p in params:
                    p.grad.mul_(clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            secs = time.perf_counter() - t0
            log.append({"step": step, "loss": float(loss), "lr": lr, "grad_norm": norm, "tokens": n,
                        "seconds": secs})
            if step % 50 == 0:
                print(f"peer step {step}/{total} loss {float(loss):.4f} {secs:.3f} s", file=sys.stderr)
            step += 1
    json.dump({"side": "peer", "threads": torch.get_num_threads(), "examples": len(examples),
               "total_steps": total, "steps": log,
               "trained_tokens": sum(len(x) - 1 for x in examples),
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024},
              open(out_path, "w"))


if __name__ == "__main__":
    main()
