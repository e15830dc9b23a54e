#!/usr/bin/env bash
# bench/lm (issue 13; training stages to come). Stage 3 (below) times greedy generation. Stage 1: token ids of hone's tokenizer,
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
"$BENCH_PY" "$here/tokenizer_texts.py" "$HONE_SHARED/datasets" "$BENCH_WORK/texts.jsonl" 300
"$BENCH_PY" "$here/tokenizer_peer.py" "$model" "$BENCH_WORK/texts.jsonl" "$BENCH_WORK/ids-transformers.jsonl"
"$HONE_ROOT/target/release/examples/lm_tokenize" "$model" "$BENCH_WORK/texts.jsonl" > "$BENCH_WORK/ids-hone.jsonl"
"$BENCH_PY" "$here/compare_ids.py" "$model" "$BENCH_WORK" "$HONE_ROOT/bench/results/lm.json" "$HONE_ROOT/bench/RESULTS.md"
# Stage 2: next-token logits and greedy continuations on the same weights and token ids.
"$BENCH_PY" "$here/prompts.py" "$HONE_SHARED/datasets" "$BENCH_WORK/prompts.jsonl" 50
"$HONE_ROOT/target/release/examples/lm_logits" "$model" "$BENCH_WORK/prompts.jsonl" > "$BENCH_WORK/logits-hone.jsonl"
"$BENCH_PY" "$here/logits_peer.py" "$model" "$BENCH_WORK/logits-hone.jsonl" "$BENCH_WORK/logits-transformers.jsonl"
"$BENCH_PY" "$here/compare_logits.py" "$BENCH_WORK" "$HONE_ROOT/bench/results/lm.json" "$HONE_ROOT/bench/RESULTS.md"
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
# Stage 5: fine-tuning side by side. A Bitext support-reply project (330 records, every 13th line of
# train_full.jsonl; 231 train, 99 frozen test) through `hone run` with hone's default LoRA recipe and full
# SFT (one epoch each here, to fit the machine; the peer runs the LoRA recipe), then the same recipe in transformers + peft on the same curated records
# and test set; both sides' test answers scored by the same code. Then the training step alone at 1 and 2
# threads on synthetic batches of 8 x 256 (hone's examples/lm_train_step against step_peer.py), interleaved.
ft="$BENCH_WORK/finetune"
rm -rf "$ft" && mkdir -p "$ft/data"
"$BENCH_PY" - "$HONE_SHARED/datasets/bitext_customer_support/train_full.jsonl" "$ft/data/replies.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][::13][:330]
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
test = 0.3
dev = 0.0
[[model]]
name = "lora"
kind = "lm"
path = "$model"
method = "lora"
[model.params]
epochs = 1
max_new_tokens = 64
[[model]]
name = "sft"
kind = "lm"
path = "$model"
method = "sft"
[model.params]
epochs = 1
max_new_tokens = 64
TOML
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
rm -f "$BENCH_WORK"/step-*.json
for round in $(seq 1 "${BENCH_ROUNDS:-2}"); do
  for threads in 1 2; do
    LORA_TARGETS=q_proj,k_proj,v_proj,o_proj RAYON_NUM_THREADS=$threads "$HONE_ROOT/target/release/examples/lm_train_step" "$model" 8 256 3 lora \
      > "$BENCH_WORK/step-hone-t$threads-r$round.json"
    BENCH_THREADS=$threads "$BENCH_PY" "$here/step_peer.py" "$model" 8 256 3 > "$BENCH_WORK/step-peer-t$threads-r$round.json"
  done
done
"$BENCH_PY" "$here/compare_steps.py" "$BENCH_WORK" "$HONE_ROOT/bench/results/lm.json" "$HONE_ROOT/bench/RESULTS.md"
