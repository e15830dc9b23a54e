#!/usr/bin/env bash
# bench/encoder: hone's encoder methods on all-MiniLM-L6-v2 vs PyTorch / sentence-transformers / SetFit on
# BANKING77 (official test set), side by side in one run. Stages (ENCODER_STAGES, default all, in order):
#   steptime  seconds per training step (batch 32, length 64, AdamW, clip) at 1 and 2 threads, hone and
#             PyTorch interleaved, ENCODER_REPS rounds (default 3) of 5 timed steps after 1 warm-up
#   frozen    frozen mean+normalised embeddings + linear head (hone: L-BFGS, C chosen on a 10% dev carve,
#             refit on train) vs scikit-learn LogisticRegression on sentence-transformers embeddings;
#             embedding throughput of the test set at 1 and 2 threads on both sides
#   setfit    8 and 16 examples per class (ENCODER_SETFIT_K; seeded sample, written by peers.py): hone's
#             SetFit-style contrastive phase + head (ENCODER_SETFIT_ITER, default 2: the same pairs and
#             steps as the peer) and hone's frozen head vs Python SetFit (2 iterations), interleaved,
#             ENCODER_SETFIT_REPS rounds (default ENCODER_REPS) at ENCODER_SETFIT_THREADS (default "2 1");
#             and scikit-learn LogisticRegression on frozen embeddings
#   finetune  full fine-tuning, both sides at once (ENCODER_FT_THREADS threads each, default 1), the same recipe (cls pooling + pooler + linear head, AdamW
#             lr 5e-5, weight decay 0.01, batch 32, 3 epochs, linear decay, no warm-up, clip 1.0, dropout,
#             max length 64, dynamic padding), test accuracy after every epoch; then hone distils the
#             fine-tuned teacher into its `ngram` model (soft cross-entropy, T = 2)
#   stretch   hone alone, two better recipes at once (1 thread each), 3 epochs, mean pooling, warm-up 0.1:
#             lpft (the declared one: linear-probe initialisation of the head, C = 10, then lr 5e-5; the
#             stronger teacher is also distilled) and headlr (random head, lr 1e-4, head lr 1e-3)
# Run via bench/run encoder (HONE_ROOT, HONE_SHARED, BENCH_WORK, BENCH_PY). Needs models/all-MiniLM-L6-v2
# (scripts/get-minilm) and bench/encoder/install.sh (run here) for torch.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${HONE_ROOT:?run via bench/run}" "${HONE_SHARED:?}" "${BENCH_WORK:?}" "${BENCH_PY:?}"
bin=${ENCODER_BIN:-$HONE_ROOT/target/release/examples/encoder_bench}
stages=${ENCODER_STAGES:-steptime frozen setfit finetune stretch}
reps=${ENCODER_REPS:-3}
model=$HONE_ROOT/models/all-MiniLM-L6-v2
[ -x "$bin" ] || { echo "encoder: $bin not found (build the hone-encoder examples in release)" >&2; exit 2; }
"$HONE_ROOT/scripts/get-minilm" >&2
BENCH_PY="$BENCH_PY" bash "$here/install.sh" >&2
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONHASHSEED=0 TOKENIZERS_PARALLELISM=false
d="$HONE_SHARED/datasets/banking77"
out="$BENCH_WORK/runs.jsonl"
mkdir -p "$BENCH_WORK"
if [ "${ENCODER_APPEND:-0}" = 1 ] && [ -f "$out" ]; then
  # Appending: the stages run now replace their earlier rows (setfit covers setfit_k8/setfit_k16).
  for stage in $stages; do
    [ "$stage" = stretch ] && continue  # replaced per recipe below
    prefixes=$stage
    # setfit replaces only the sample sizes it runs (ENCODER_SETFIT_K).
    [ "$stage" = setfit ] && prefixes=$(for k in ${ENCODER_SETFIT_K:-8 16}; do echo "setfit_k$k\""; done)
    for pre in $prefixes; do
      grep -v "^{\"stage\":\"$pre" "$out" > "$out.tmp" || true; mv "$out.tmp" "$out"
    done
  done
else
  : > "$out"
fi
tag() { sed "s/^{/{\"stage\":\"$1\",\"side\":\"$2\",\"round\":$3,/"; }
py() { OMP_NUM_THREADS=$1 MKL_NUM_THREADS=$1 "$BENCH_PY" "$here/peers.py" "${@:2}"; }

for stage in $stages; do
  case "$stage" in
    steptime)
      for i in $(seq 1 "$reps"); do
        for t in 1 2; do
          echo "encoder: steptime round $i/$reps, $t thread(s)" >&2
          "$bin" steptime --model "$model" --train "$d/train.jsonl" --threads "$t" --steps 5 --warmup-steps 1 \
            | tag steptime "hone_${t}t" "$i" >> "$out"
          py "$t" steptime --model "$model" --train "$d/train.jsonl" --threads "$t" --steps 5 --warmup 1 \
            | tag steptime "torch_${t}t" "$i" >> "$out"
          # The same batch with every padding position computed (HONE_PADDED=1), as PyTorch does: the
          # kernels compared on equal work. hone's own path above computes only the real tokens.
          HONE_PADDED=1 "$bin" steptime --model "$model" --train "$d/train.jsonl" --threads "$t" --steps 5 --warmup-steps 1 \
            | tag steptime "honepadded_${t}t" "$i" >> "$out"
        done
      done ;;
    frozen)
      for t in 2 1; do
        echo "encoder: frozen, $t thread(s)" >&2
        "$bin" frozen --model "$model" --train "$d/train.jsonl" --test "$d/test.jsonl" --threads "$t" --reps 3 \
          | tag frozen "hone_${t}t" 1 >> "$out"
        py "$t" frozen --model "$model" --train "$d/train.jsonl" --test "$d/test.jsonl" --threads "$t" \
          | tag frozen "st_${t}t" 1 >> "$out"
      done ;;
    setfit)
      # Per sample size: ENCODER_SETFIT_REPS rounds (default ENCODER_REPS) at each of
      # ENCODER_SETFIT_THREADS (default "2 1"), hone then SetFit within each round; the frozen-LR peer
      # (deterministic, seconds) once.
      for k in ${ENCODER_SETFIT_K:-8 16}; do
        s="$BENCH_WORK/sample_k$k.jsonl"
        py 2 sample --train "$d/train.jsonl" --k "$k" --seed 0 --out "$s" > /dev/null
        py 2 frozen_lr --model "$model" --sample "$s" --test "$d/test.jsonl" --threads 2 \
          | tag "setfit_k$k" lr 1 >> "$out"
        for i in $(seq 1 "${ENCODER_SETFIT_REPS:-$reps}"); do
          for t in ${ENCODER_SETFIT_THREADS:-2 1}; do
            echo "encoder: setfit k=$k round $i, $t thread(s)" >&2
            "$bin" setfit --model "$model" --sample "$s" --test "$d/test.jsonl" --threads "$t" --iterations "${ENCODER_SETFIT_ITER:-2}" \
              | tag "setfit_k$k" "hone_${t}t" "$i" >> "$out"
            py "$t" setfit --model "$model" --sample "$s" --test "$d/test.jsonl" --threads "$t" --num-iterations 2 \
              | tag "setfit_k$k" "setfit_${t}t" "$i" >> "$out"
          done
        done
      done ;;
    finetune)
      # Both sides at the same time, ENCODER_FT_THREADS (default 1) threads each: neither has the
      # machine to itself, and the two 3-epoch runs fit in one sitting on 2 cores.
      ft=${ENCODER_FT_THREADS:-1}
      echo "encoder: fine-tuning, hone (+ distillation) and PyTorch side by side, $ft thread(s) each" >&2
      "$bin" finetune --model "$model" --train "$d/train.jsonl" --test "$d/test.jsonl" --threads "$ft" \
        --epochs 3 --lr 5e-5 --batch 32 --max-length 64 --pooling cls --distill > "$BENCH_WORK/ft_hone.json" &
      hp=$!
      py "$ft" finetune --model "$model" --train "$d/train.jsonl" --test "$d/test.jsonl" --threads "$ft" \
        --epochs 3 --lr 5e-5 --batch 32 --max-length 64 > "$BENCH_WORK/ft_torch.json" &
      tp=$!
      wait "$hp"; wait "$tp"
      tag finetune hone 1 < "$BENCH_WORK/ft_hone.json" >> "$out"
      tag finetune torch 1 < "$BENCH_WORK/ft_torch.json" >> "$out"
      ;;
    stretch)
      # ENCODER_STRETCH picks the recipes (default both, side by side at 1 thread each; one alone gets
      # ENCODER_FT_THREADS, default 2); ENCODER_DISTILL_ALPHA the gold-label weights of the distilled
      # students (comma list, default 0 = the teacher alone).
      recipes=${ENCODER_STRETCH:-lpft headlr}
      n=$(echo $recipes | wc -w)
      st=1; [ "$n" = 1 ] && st=${ENCODER_FT_THREADS:-2}
      echo "encoder: stretch recipes ($recipes), $st thread(s) each" >&2
      common=(--model "$model" --train "$d/train.jsonl" --test "$d/test.jsonl" --threads "$st" --epochs 3
              --batch 32 --max-length 64 --pooling mean --warmup 0.1)
      pids=()
      for r in $recipes; do
        case "$r" in
          lpft) extra=(--lr 5e-5 --probe-init 10 --distill --distill-alpha "${ENCODER_DISTILL_ALPHA:-0}") ;;
          headlr) extra=(--lr 1e-4 --head-lr 1e-3) ;;
          *) echo "encoder: unknown stretch recipe $r" >&2; exit 2 ;;
        esac
        "$bin" finetune "${common[@]}" "${extra[@]}" > "$BENCH_WORK/stretch_$r.json" &
        pids+=($!)
      done
      for p in "${pids[@]}"; do wait "$p"; done
      for r in $recipes; do
        grep -v "^{\"stage\":\"stretch\",\"side\":\"$r\"" "$out" > "$out.tmp" || true; mv "$out.tmp" "$out"
        tag stretch "$r" 1 < "$BENCH_WORK/stretch_$r.json" >> "$out"
      done
      ;;
    *) echo "encoder: unknown stage $stage" >&2; exit 2 ;;
  esac
done

mkdir -p "$HONE_ROOT/bench/results"
"$BENCH_PY" "$here/summarise.py" "$out" "$HONE_ROOT/bench/results/encoder.json" "$HONE_ROOT/bench/RESULTS.md"
