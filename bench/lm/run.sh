#!/usr/bin/env bash
# bench/lm (issue 13), six stages; LM_STAGES="5 6" runs some. Stage 3 (below) times greedy generation. Stage 1: token ids of hone's tokenizer,
# rebuilt from SmolLM2-135M-Instruct's GGUF metadata, against `transformers`' tokenizer loaded from the
# same file, on 1,500 texts from the shared datasets and chat renders. Stage 2: next-token logits and greedy
# continuations against transformers on the same weights and token ids, 50 prompts.
set -euo pipefail
: "${HONE_ROOT:?run via bench/run}" "${HONE_SHARED:?}" "${BENCH_WORK:?}" "${BENCH_PY:?}"
here="$HONE_ROOT/bench/lm"
bash "$HONE_ROOT/scripts/get-smollm2"
model="$HONE_ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
# transformers reads GGUF through the `gguf` package and imports torch to do it.
"$BENCH_PY" -c "import torch, transformers" 2>/dev/null || BENCH_PY="$BENCH_PY" bash "$HONE_ROOT/bench/encoder/install.sh"
# LM_STAGES picks stages (default: all, "1 2 3 4 5 6"); stage 4 reads stage 2's logits.
stage() { [[ " ${LM_STAGES:-1 2 3 4 5 6} " == *" $1 "* ]]; }
if stage 1; then
"$BENCH_PY" "$here/tokenizer_texts.py" "$HONE_SHARED/datasets" "$BENCH_WORK/texts.jsonl" 300
"$BENCH_PY" "$here/tokenizer_peer.py" "$model" "$BENCH_WORK/texts.jsonl" "$BENCH_WORK/ids-transformers.jsonl"
"$HONE_ROOT/target/release/examples/lm_tokenize" "$model" "$BENCH_WORK/texts.jsonl" > "$BENCH_WORK/ids-hone.jsonl"
"$BENCH_PY" "$here/compare_ids.py" "$model" "$BENCH_WORK" "$HONE_ROOT/bench/results/lm.json" "$HONE_ROOT/bench/RESULTS.md"
fi
if stage 2; then
# Stage 2: next-token logits and greedy continuations on the same weights and token ids.
"$BENCH_PY" "$here/prompts.py" "$HONE_SHARED/datasets" "$BENCH_WORK/prompts.jsonl" 50
"$HONE_ROOT/target/release/examples/lm_logits" "$model" "$BENCH_WORK/prompts.jsonl" > "$BENCH_WORK/logits-hone.jsonl"
"$BENCH_PY" "$here/logits_peer.py" "$model" "$BENCH_WORK/logits-hone.jsonl" "$BENCH_WORK/logits-transformers.jsonl"
"$BENCH_PY" "$here/compare_logits.py" "$BENCH_WORK" "$HONE_ROOT/bench/results/lm.json" "$HONE_ROOT/bench/RESULTS.md"
fi
if stage 3; then
# Stage 3: greedy generation speed, batch 1 and 8, 1 and 2 threads, rounds interleaved (BENCH_ROUNDS, 2).
rm -f "$BENCH_WORK"/speed-*.json
for round in $(seq 1 "${BENCH_ROUNDS:-2}"); do
  for threads in 1 2; do
    for batch in 1 8; do
      RAYON_NUM_THREADS=$threads "$HONE_ROOT/target/release/examples/lm_speed" "$model" "$BENCH_WORK/logits-hone.jsonl" "$batch" 24 \
        > "$BENCH_WORK/speed-hone-b$batch-t$threads-r$round.json"
      BENCH_THREADS=$threads "$BENCH_PY" "$here/speed_peer.py" "$model" "$BENCH_WORK/logits-hone.jsonl" "$batch" 24 \
        > "$BENCH_WORK/speed-transformers-b$batch-t$threads-r$round.json"
    done
  done
done
"$BENCH_PY" "$here/compare_speed.py" "$BENCH_WORK" "$HONE_ROOT/bench/results/lm.json" "$HONE_ROOT/bench/RESULTS.md"
fi
if stage 4; then
# Stage 4: a short LoRA run on SmolLM2 through `hone run` (40 Bitext pairs), `hone export`, and the
# export loaded back with transformers + peft.
proj="$BENCH_WORK/lora-project"
rm -rf "$proj" && mkdir -p "$proj/data"
"$BENCH_PY" - "$HONE_SHARED/datasets/bitext_customer_support/train_full.jsonl" "$proj/data/replies.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][::100][:45]
with open(sys.argv[2], "w") as f:
    for r in rows:
        f.write(json.dumps({"id": r["id"], "question": r["text"], "answer": r["response"]}) + "\n")
PY
cat > "$proj/hone.toml" <<TOML
[task]
name = "replies"
kind = "generate"
[[source]]
name = "bitext"
path = "data/replies.jsonl"
fields = { prompt = "question", target = "answer" }
[split]
test = 0.1
dev = 0.1
[[model]]
name = "tuned"
kind = "lm"
path = "$model"
method = "lora"
[model.params]
epochs = 1
batch_size = 4
max_length = 128
max_new_tokens = 32
TOML
"$HONE_BIN" -C "$proj" run > "$BENCH_WORK/lora-run.txt"
rm -rf "$BENCH_WORK/export"
"$HONE_BIN" -C "$proj" export --model tuned --out "$BENCH_WORK/export"
"$BENCH_PY" "$here/export_check.py" "$model" "$BENCH_WORK/export" "$BENCH_WORK/logits-hone.jsonl" "$HONE_ROOT/bench/results/lm.json" "$HONE_ROOT/bench/RESULTS.md"
fi
if stage 5; then
# Stage 5: fine-tuning side by side, at the issue's size. A Bitext support-reply project (LM_FT_RECORDS,
# default 1,340: every 3rd line of train_full.jsonl; a quarter frozen as test, so about 1,000 train and
# 335 test) through `hone run` with hone's default LoRA recipe and full SFT (LM_FT_MODELS, default
# "lora sft"; one epoch each, to fit the machine; the peer runs the LoRA recipe), then the same recipe in
# transformers + peft on the same curated records and test set; both sides' test answers scored by the
# same code. Then (unless LM_FT_STEPS=0) the training step alone at 1 and 2 threads on synthetic batches
# of 8 x 256 (hone's examples/lm_train_step against step_peer.py), interleaved. On 2 cores the whole
# stage takes about four hours (126 steps a side; at 231 training records a LoRA step took 29.5 s and a
# full-SFT step 65 s), most of it full SFT; LM_FT_MODELS=lora takes under two.
ft="$BENCH_WORK/finetune"
rm -rf "$ft" && mkdir -p "$ft/data"
"$BENCH_PY" - "$HONE_SHARED/datasets/bitext_customer_support/train_full.jsonl" "$ft/data/replies.jsonl" "${LM_FT_RECORDS:-1340}" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][::3][:int(sys.argv[3])]
with open(sys.argv[2], "w") as f:
    for r in rows:
        f.write(json.dumps({"id": r["id"], "question": r["text"], "answer": r["response"], "intent": r["label"]}) + "\n")
PY
cat > "$ft/hone.toml" <<TOML
[task]
name = "support-replies"
kind = "generate"
[[source]]
name = "bitext"
path = "data/replies.jsonl"
fields = { prompt = "question", target = "answer", topic = "intent" }
[split]
test = 0.25
dev = 0.0
TOML
for m in ${LM_FT_MODELS:-lora sft}; do
  printf '[[model]]\nname = "%s"\nkind = "lm"\npath = "%s"\nmethod = "%s"\n[model.params]\nepochs = 1\nmax_new_tokens = 64\n' \
    "$m" "$model" "$m" >> "$ft/hone.toml"
done
threads=${BENCH_FT_THREADS:-2}
/usr/bin/time -v "$HONE_BIN" --threads "$threads" -C "$ft" run > "$ft/hone-run.txt" 2> "$ft/hone-time.txt"
"$HONE_BIN" -C "$ft" --json data show > "$ft/records.json"
"$BENCH_PY" - "$ft" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(f"{sys.argv[1]}/.hone/hone.db")
records = json.loads(db.execute("select records from frozen_tests order by seq desc limit 1").fetchone()[0])
json.dump([r["id"] for r in records], open(f"{sys.argv[1]}/test-ids.json", "w"))
PY
"$BENCH_PY" -m pip install -q rouge-score sacrebleu
"$BENCH_PY" "$here/finetune_peer.py" "$model" "$ft/records.json" "$ft/test-ids.json" "$ft" "$threads" 2> "$ft/peer-log.txt"
"$BENCH_PY" "$here/compare_finetune.py" "$ft" "$ft/records.json" "$ft" "$ft/hone-time.txt" "$HONE_ROOT/bench/results/lm.json" "$HONE_ROOT/bench/RESULTS.md"
if [ "${LM_FT_STEPS:-1}" != 0 ]; then
rm -f "$BENCH_WORK"/step-*.json
for round in $(seq 1 "${BENCH_ROUNDS:-2}"); do
  for threads in 1 2; do
    LORA_TARGETS=q_proj,k_proj,v_proj,o_proj RAYON_NUM_THREADS=$threads "$HONE_ROOT/target/release/examples/lm_train_step" "$model" 8 256 3 lora \
      > "$BENCH_WORK/step-hone-t$threads-r$round.json"
    BENCH_THREADS=$threads "$BENCH_PY" "$here/step_peer.py" "$model" 8 256 3 > "$BENCH_WORK/step-peer-t$threads-r$round.json"
  done
done
"$BENCH_PY" "$here/compare_steps.py" "$BENCH_WORK" "$HONE_ROOT/bench/results/lm.json" "$HONE_ROOT/bench/RESULTS.md"
fi
fi
# Stage 6: pre-training side by side. A decoder of ~6.5M parameters (6 layers, hidden 256, a BPE
# tokenizer of up to 8,192 tokens trained by hone) from scratch on the shared datasets' longer texts:
# Bitext support requests and replies (train_full.jsonl) and GSM8K questions and worked answers (train
# and test), 13,306 records, about 2.1M tokens, one epoch, hone's pre-training defaults otherwise, through
# `hone run` at 2 threads. Then the same run in PyTorch (pretrain_peer.py): hone's tokenizer, hone's
# initial weights, hone's batches in hone's order, hone's recipe; loss curves compared at equal tokens.
# Then the training step alone, 8 x 256 synthetic tokens, every token trained, 1 and 2 threads, interleaved.
if stage 6; then
pt="$BENCH_WORK/pretrain"
rm -rf "$pt" && mkdir -p "$pt/data"
"$BENCH_PY" - "$HONE_SHARED/datasets" "$pt/data" <<'PY'
import json, sys
src, out = sys.argv[1:3]
with open(f"{out}/bitext.jsonl", "w") as f:
    for l in open(f"{src}/bitext_customer_support/train_full.jsonl"):
        r = json.loads(l)
        f.write(json.dumps({"id": r["id"], "prompt": r["text"], "target": r["response"]}) + "\n")
with open(f"{out}/gsm8k.jsonl", "w") as f:
    for part in ("train", "test"):
        for l in open(f"{src}/gsm8k/{part}.jsonl"):
            r = json.loads(l)
            f.write(json.dumps({"id": r["id"], "prompt": r["question"], "target": r["answer"]}) + "\n")
PY
cat > "$pt/hone.toml" <<'TOML'
[task]
name = "pretrain-shared"
kind = "generate"
[[source]]
name = "bitext"
path = "data/bitext.jsonl"
fields = { prompt = "prompt", target = "target" }
[[source]]
name = "gsm8k"
path = "data/gsm8k.jsonl"
fields = { prompt = "prompt", target = "target" }
[policy]
contamination = "drop_train"
[split]
test = 0.02
dev = 0.0
[[model]]
name = "scratch"
kind = "lm"
method = "pretrain"
[model.params]
epochs = 1
layers = 6
vocab_size = 8192
max_new_tokens = 32
TOML
/usr/bin/time -v "$HONE_BIN" --threads 2 -C "$pt" run > "$pt/hone-run.txt" 2> "$pt/hone-time.txt"
"$HONE_BIN" -C "$pt" export --model scratch --out "$pt/export" > /dev/null
"$HONE_BIN" -C "$pt" --json data show > "$pt/records.json"
"$HONE_BIN" -C "$pt" --json runs > "$pt/runs.json"
"$BENCH_PY" - "$pt" <<'PY'
import json, sqlite3, sys
d = sys.argv[1]
db = sqlite3.connect(f"{d}/.hone/hone.db")
recs = json.loads(db.execute("select records from frozen_tests order by seq desc limit 1").fetchone()[0])
json.dump([r["id"] for r in recs], open(f"{d}/test-ids.json", "w"))
split = db.execute("select id from splits order by created_at desc limit 1").fetchone()[0]
dropped = [r for (r,) in db.execute("select record_id from split_lineage where split = ?", (split,))]
json.dump(dropped, open(f"{d}/dropped-ids.json", "w"))
run = [r for r in json.load(open(f"{d}/runs.json")) if r["model"] == "scratch"][0]
p = run["config"]["params"]
json.dump({"seed": run["seed"], "epochs": p["epochs"], "batch_size": p["batch_size"], "lr": p["lr"],
           "warmup_ratio": p["warmup_ratio"], "max_grad_norm": p["max_grad_norm"],
           "max_length": p["max_length"]}, open(f"{d}/recipe.json", "w"))
PY
/usr/bin/time -v "$BENCH_PY" "$here/pretrain_peer.py" "$pt/export" "$pt/records.json" "$pt/test-ids.json" \
  "$pt/dropped-ids.json" "$pt/recipe.json" 2 "$pt/peer.json" 2> "$pt/peer-log.txt"
"$BENCH_PY" "$here/compare_pretrain.py" "$pt" "$HONE_ROOT/bench/results/lm.json" "$HONE_ROOT/bench/RESULTS.md"
rm -f "$BENCH_WORK"/pretrain-step-*.json
for round in $(seq 1 "${BENCH_ROUNDS:-2}"); do
  for threads in 1 2; do
    LM_STEP_TRAIN_ALL=1 RAYON_NUM_THREADS=$threads "$HONE_ROOT/target/release/examples/lm_train_step" "$pt/export" 8 256 4 full \
      > "$BENCH_WORK/pretrain-step-hone-t$threads-r$round.json"
    BENCH_THREADS=$threads "$BENCH_PY" "$here/step_peer.py" "$pt/export" 8 256 4 > "$BENCH_WORK/pretrain-step-peer-t$threads-r$round.json"
  done
done
"$BENCH_PY" "$here/compare_steps.py" "$BENCH_WORK" "$HONE_ROOT/bench/results/lm.json" "$HONE_ROOT/bench/RESULTS.md" \
  pretrain-step pretrain_step "pre-training step (every weight, every token), 8 × 256 synthetic"
fi
