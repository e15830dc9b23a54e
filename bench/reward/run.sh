#!/usr/bin/env bash
# bench/reward (issue 14): reward training on Bitext support replies under house rules.
# REWARD_STAGES picks stages (default "1 2 3"); REWARD_GRPO_STEPS and REWARD_GRPO_LR the GRPO steps (default
# 100) and learning rate (default 5e-5) of stage 3:
#  1. the project (every 3rd Bitext record; `number` = the order/invoice number the message carries),
#     the cosine threshold measured (cosine_threshold.py), `hone grade validate` on the house-rules
#     grader (references passing, attacks including a generic reply).
#  2. time per GRPO step, hone vs TRL's GRPOTrainer on the CPU, the same recipe from the base model
#     (fresh LoRA, 4 prompts x 4 completions, 96 tokens, REWARD_TIMING_STEPS = 20 steps, 2 threads).
#  3. quality through `hone run`: base, LoRA SFT on the replies, SFT + GRPO (start_from), grader pass
#     rate with CIs on the frozen test set (>= 300), `hone compare`.
#  4. DPO from reviews: `hone review answers` on the LoRA SFT model's answers to 80 training prompts
#     (its own answer + 3 samples at 0.8; with 2 answers only 18 of 60 prompts gave a pair), marked
#     by mark_sheet.py (a scripted reviewer: the house rules that need no encoder), `hone review
#     import`, `hone review pairs`, then a `dpo` model from the SFT weights on those
#     pairs; `hone compare lora dpo`. (Not in the default stages.)
#  5. distillation: a small model pre-trained by hone (4 layers, hidden 256, its own 4,096-token
#     vocabulary) learns from the GRPO model's answers to the training prompts (sequence-level: the
#     tokenizers differ); the run reports retention and speed-up. (Not in the default stages.)
# Stages 4 and 5 reuse stage 3's runs: run them with the same REWARD_GRPO_STEPS.
set -euo pipefail
: "${HONE_ROOT:?run via bench/run}" "${HONE_SHARED:?}" "${BENCH_WORK:?}" "${BENCH_PY:?}" "${HONE_BIN:?}"
here="$HONE_ROOT/bench/reward"
bash "$HONE_ROOT/scripts/get-smollm2"
bash "$HONE_ROOT/scripts/get-minilm"
model="$HONE_ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
minilm="$HONE_ROOT/models/all-MiniLM-L6-v2"
stage() { [[ " ${REWARD_STAGES:-1 2 3} " == *" $1 "* ]]; }
# The latest run of a model (`hone compare` takes run numbers or id prefixes, not model names).
seq_of() { (cd "$proj" && "$HONE_BIN" --json runs) | "$BENCH_PY" -c "import json,sys; print(max(r['seq'] for r in json.load(sys.stdin) if r['model'] == sys.argv[1]))" "$1"; }
proj="$BENCH_WORK/house-rules"
mkdir -p "$proj/data" "$proj/graders"
"$BENCH_PY" "$here/prepare.py" "$HONE_SHARED/datasets/bitext_customer_support/train_full.jsonl" "$proj/data/replies.jsonl"
sed "s#MINILM#$minilm#" "$here/house_rules.toml" > "$proj/graders/house_rules.toml"
cat > "$proj/hone.toml" <<TOML
[task]
name = "support-replies-house-rules"
kind = "generate"
# The house rules are the goal, similarity to the references only a check: rank the models by the
# grader's dev pass rate (dev ROUGE-L, the default, chose the LoRA SFT model over SFT + GRPO).
select_by = "grader_house_rules_pass_rate"

[[source]]
name = "bitext"
path = "data/replies.jsonl"
fields = { prompt = "question", target = "answer", topic = "intent" }

[split]
test = 0.22
dev = 0.04

[[model]]
name = "base"
kind = "lm"
path = "$model"
method = "none"
[model.params]
max_new_tokens = 96

[[model]]
name = "lora"
kind = "lm"
path = "$model"
method = "lora"
[model.params]
epochs = 1
max_new_tokens = 96

[[model]]
name = "grpo"
kind = "lm"
path = "$model"
method = "grpo"
[model.params]
reward = "house_rules"
start_from = "lora"
steps = ${REWARD_GRPO_STEPS:-100}
# hone's GRPO default (1e-5) moves LoRA adapters little in the few steps this machine allows; 5e-5
# is a quarter of the LoRA SFT rate, and the step-0 dev score keeps the SFT weights if it harms.
lr = ${REWARD_GRPO_LR:-5e-5}
max_new_tokens = 96
TOML
export RAYON_NUM_THREADS=2
if stage 1; then
  "$BENCH_PY" "$here/cosine_threshold.py" "$HONE_SHARED/datasets/bitext_customer_support/train_full.jsonl" "$minilm" "$BENCH_WORK/cosine_threshold.json" > /dev/null
  (cd "$proj" && "$HONE_BIN" data clean > /dev/null && "$HONE_BIN" --json grade validate > "$BENCH_WORK/validate.json" || true)
fi
if stage 2; then
  # The same recipe on both sides, from the base model: fresh LoRA, no SFT first.
  timing="$BENCH_WORK/timing"
  rm -rf "$timing" && mkdir -p "$timing" && cp -r "$proj/data" "$proj/graders" "$timing/"
  # A small test set and no dev set: the figure is the time per step, not the quality.
  sed -e '/^\[\[model\]\]/,$d' -e 's/^test = .*/test = 0.05/' -e 's/^dev = .*/dev = 0.0/' "$proj/hone.toml" > "$timing/hone.toml"
  cat >> "$timing/hone.toml" <<TOML
[[model]]
name = "grpo"
kind = "lm"
path = "$model"
method = "grpo"
[model.params]
reward = "house_rules"
steps = ${REWARD_TIMING_STEPS:-20}
max_new_tokens = 96
TOML
  (cd "$timing" && "$HONE_BIN" data clean > /dev/null && "$HONE_BIN" --json run > "$BENCH_WORK/timing-hone.json")
  (cd "$timing" && "$HONE_BIN" --json runs > "$BENCH_WORK/timing-runs.json")
  # The peer samples from every record's prompt (timing only: the prompts' lengths are alike).
  "$BENCH_PY" - "$proj/data/replies.jsonl" "$BENCH_WORK/peer-prompts.jsonl" <<'PY'
import json, sys
with open(sys.argv[2], "w") as f:
    for l in open(sys.argv[1]):
        r = json.loads(l)
        f.write(json.dumps({"id": r["id"], "prompt": r["question"], "reference": r["answer"], "number": r["number"]}) + "\n")
PY
  "$BENCH_PY" -c "import torch, transformers, sentence_transformers" 2>/dev/null || BENCH_PY="$BENCH_PY" bash "$HONE_ROOT/bench/encoder/install.sh"
  "$BENCH_PY" -m pip install -q --disable-pip-version-check --no-deps trl==1.16.0 peft==0.21.2
  HF_HUB_OFFLINE=1 "$BENCH_PY" "$here/grpo_peer.py" "$model" "$BENCH_WORK/peer-prompts.jsonl" "$minilm" "${REWARD_TIMING_STEPS:-20}" 2 "$BENCH_WORK/timing-trl.json"
fi
if stage 3; then
  (cd "$proj" && "$HONE_BIN" --json run > "$BENCH_WORK/run.json")
  (cd "$proj" && "$HONE_BIN" --json compare "$(seq_of base)" "$(seq_of lora)" > "$BENCH_WORK/compare-base-lora.json" || true)
  (cd "$proj" && "$HONE_BIN" --json compare "$(seq_of lora)" "$(seq_of grpo)" > "$BENCH_WORK/compare-lora-grpo.json" || true)
  (cd "$proj" && "$HONE_BIN" --json compare "$(seq_of base)" "$(seq_of grpo)" > "$BENCH_WORK/compare-base-grpo.json" || true)
  (cd "$proj" && "$HONE_BIN" --json grade run --model grpo --split dev > "$BENCH_WORK/grade-dev-grpo.json" || true)
fi
if stage 4; then
  (cd "$proj" && "$HONE_BIN" --json review answers --model lora --n ${REWARD_REVIEW_PROMPTS:-80} --samples ${REWARD_REVIEW_ANSWERS:-4} > "$BENCH_WORK/review-sheet.json")
  # The sheet's path is relative to the project.
  sheet=$(cd "$proj" && realpath "$("$BENCH_PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['path'])" "$BENCH_WORK/review-sheet.json")")
  "$BENCH_PY" "$here/mark_sheet.py" "$sheet" "$proj/data/replies.jsonl" "$proj/graders/house_rules.toml" "$proj/reviews/marked.jsonl"
  (cd "$proj" && HONE_USER=bench-reviewer "$HONE_BIN" review import reviews/marked.jsonl > /dev/null)
  (cd "$proj" && "$HONE_BIN" --json review pairs --out data/pairs.jsonl > "$BENCH_WORK/review-pairs.json")
  grep -q '^name = "dpo"' "$proj/hone.toml" || cat >> "$proj/hone.toml" <<TOML

[[model]]
name = "dpo"
kind = "lm"
path = "$model"
method = "dpo"
[model.params]
start_from = "lora"
preferences = "data/pairs.jsonl"
# hone's DPO default (5e-6, for full weights) barely moves LoRA adapters in the ~20 steps a few dozen
# pairs give; 5e-5 is a quarter of the LoRA SFT rate, as for GRPO.
lr = ${REWARD_DPO_LR:-5e-5}
# One pass over the pairs: three (the default) cost 25 minutes more on 2 cores.
epochs = 1
max_new_tokens = 96
TOML
  (cd "$proj" && "$HONE_BIN" --json run > "$BENCH_WORK/run-dpo.json")
  (cd "$proj" && "$HONE_BIN" --json compare "$(seq_of lora)" "$(seq_of dpo)" > "$BENCH_WORK/compare-lora-dpo.json" || true)
fi
if stage 5; then
  grep -q '^name = "student"' "$proj/hone.toml" || cat >> "$proj/hone.toml" <<TOML

[[model]]
name = "student"
kind = "lm"
method = "pretrain"
[model.params]
distill_from = "grpo"
hidden = 256
layers = 4
heads = 4
kv_heads = 2
ffn = 768
vocab_size = 4096
epochs = 8
lr = 0.003
batch_size = 16
max_new_tokens = 96
TOML
  (cd "$proj" && "$HONE_BIN" --json run > "$BENCH_WORK/run-student.json")
  (cd "$proj" && "$HONE_BIN" --json compare "$(seq_of grpo)" "$(seq_of student)" > "$BENCH_WORK/compare-grpo-student.json" || true)
fi
# Every run's record (GRPO's per-step signals, DPO's and the student's training reports), then the
# figures into bench/results/reward.json and RESULTS.md.
(cd "$proj" && "$HONE_BIN" --json runs > "$BENCH_WORK/runs.json")
"$BENCH_PY" "$here/summarise.py" "$BENCH_WORK" "$HONE_ROOT/bench/results/reward.json" "$HONE_ROOT/bench/RESULTS.md"
