"""bench/reward, the peer: the same GRPO recipe as hone's in TRL's GRPOTrainer on the CPU, for time per
step side by side. Same weights (SmolLM2-135M-Instruct read from the same GGUF file), same prompts (the
training split of the hone project, rendered by the same chat template with its default system
message), 4 prompts x 4 completions per step, completions capped at 96 tokens, temperature 1.0, fresh
LoRA rank 16 / alpha 32 / dropout 0.05 on q/k/v/o, lr 1e-5 constant after no warm-up with linear decay,
loss `dapo`, beta 0, one iteration per batch. The reward is the house-rules grader ported to Python (the
same five rules, the same regexes, the same MiniLM cosine), so the reward each side reaches is
comparable too.

    python grpo_peer.py MODEL.gguf PROMPTS.jsonl MINILM_DIR STEPS THREADS OUT.json
PROMPTS.jsonl: {"id", "prompt", "reference", "number"} per training record."""
import json
import pathlib
import re
import resource
import sys
import time

import torch
from datasets import Dataset
from peft import LoraConfig
from sentence_transformers import SentenceTransformer
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

gguf, prompts_path, minilm, steps, threads, out = sys.argv[1:7]
torch.set_num_threads(int(threads))
gguf = pathlib.Path(gguf)
tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32)
# transformers dequantizes a GGUF file's weights to float32 on load; the quantization marker it leaves
# behind only makes the Trainer refuse to train them.
model.hf_quantizer = None
try:
    model.is_quantized = False
except AttributeError:
    pass
rows = [json.loads(l) for l in open(prompts_path)]
data = Dataset.from_list([
    {"prompt": [{"role": "user", "content": r["prompt"]}], "reference": r["reference"], "number": r["number"]}
    for r in rows
])
encoder = SentenceTransformer(minilm, device="cpu")

NO_PROMISE = re.compile(r"""\{\{\s*(refund amount|amount|date|delivery date|estimated delivery date|refund date)\s*\}\}|\b(will|'ll|shall|going to)\s+(be\s+)?(refund|reimburs|credit)\w*|\byou('ll| will) (receive|get) (a |your )?(full )?refund|[$€£]\s?\d|\b\d+(\.\d+)?\s?(dollars|euros|usd|eur|gbp)\b|\bwithin \d+\s+(business\s+)?(hours?|days?|weeks?)\b|\b(by|on|before) (monday|tuesday|wednesday|thursday|friday|saturday|sunday|tomorrow)\b|\b(january|february|march|april|june|july|august|september|october|november|december) \d{1,2}\b|\b\d{1,2}/\d{1,2}(/\d{2,4})?\b""", re.I)
OFFER = re.compile(r"""(anything else|further (help|assistance|questions?)|other questions?|let (me|us) know|(don't|do not) hesitate|feel free to|(here|happy|glad) to (help|assist))[^.!?]{0,80}[.!?]?["')\s]*$""", re.I)


def house_rules(completions, reference, number, **_):
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    a = encoder.encode(texts, normalize_embeddings=True)
    b = encoder.encode(list(reference), normalize_embeddings=True)
    out = []
    for t, n, cos in zip(texts, number, (a * b).sum(1)):
        words = len(t.split())
        rules = [
            1.0 if 3 <= words <= 80 else 0.0,
            1.0 if n in t else 0.0,
            0.0 if NO_PROMISE.search(t) else 1.0,
            1.0 if OFFER.search(t) else 0.0,
            min(1.0, max(float(cos), 0.0) / 0.5),
        ]
        out.append(sum(rules) / 5)
    return out


class Timer(TrainerCallback):
    def __init__(self):
        self.t, self.steps = None, []

    def on_step_begin(self, args, state, control, **kw):
        self.t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.steps.append(time.perf_counter() - self.t)


cfg = GRPOConfig(
    output_dir=str(pathlib.Path(out).parent / "trl-grpo"),
    max_steps=int(steps),
    per_device_train_batch_size=16,
    gradient_accumulation_steps=1,
    num_generations=4,
    max_completion_length=96,
    temperature=1.0,
    learning_rate=1e-5,
    lr_scheduler_type="linear",
    weight_decay=0.0,
    max_grad_norm=1.0,
    beta=0.0,
    loss_type="dapo",
    num_iterations=1,
    logging_steps=1,
    save_strategy="no",
    report_to=[],
    use_cpu=True,
    bf16=False,
    seed=0,
)
timer = Timer()
trainer = GRPOTrainer(
    model=model,
    processing_class=tok,
    reward_funcs=[house_rules],
    args=cfg,
    train_dataset=data,
    peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"),
    callbacks=[timer],
)
trainer.train()
logs = [h for h in trainer.state.log_history if "reward" in h]
json.dump({
    "step_seconds": timer.steps,
    "reward": [h.get("reward") for h in logs],
    "frac_reward_zero_std": [h.get("frac_reward_zero_std") for h in logs],
    "clipped_ratio": [h.get("completions/clipped_ratio") for h in logs],
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}, open(out, "w"), indent=1)
