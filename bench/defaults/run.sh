#!/usr/bin/env bash
# bench/defaults: the curation and split defaults measured through the product. For each shared
# classification set and each setting of `[policy] near_duplicates` and `[split] fold_dev`, a project
# is written (its hone.toml printed into bench/work/defaults/), `hone run` trains the default `ngram`
# model, and test accuracy is computed from `hone predict` on the test texts; ECE comes from the run.
set -euo pipefail
: "${HONE_ROOT:?run via bench/run}" "${HONE_SHARED:?}" "${BENCH_WORK:?}" "${BENCH_PY:?}" "${HONE_BIN:?}"
exec "$BENCH_PY" "$HONE_ROOT/bench/defaults/defaults.py" "$HONE_BIN" "$HONE_SHARED/datasets" "$BENCH_WORK" \
  "$HONE_ROOT/bench/results/defaults.json" "$HONE_ROOT/bench/RESULTS.md"
