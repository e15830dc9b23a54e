#!/usr/bin/env bash
# bench/leaks: the leak check through the product (`hone --json split`, default policy) on the shared
# sets' official splits. Reports (1) flagged pairs by rule per set, (2) precision of the hand-judged
# sample in judged.jsonl (pairs no longer flagged are listed, not counted), (3) recall of planted leaks
# of each kind, copied from BANKING77 test texts into its training source.
set -euo pipefail
: "${HONE_ROOT:?run via bench/run}" "${HONE_SHARED:?}" "${BENCH_WORK:?}" "${BENCH_PY:?}" "${HONE_BIN:?}"
exec "$BENCH_PY" "$HONE_ROOT/bench/leaks/leaks.py" "$HONE_BIN" "$HONE_SHARED/datasets" "$BENCH_WORK" \
  "$HONE_ROOT/bench/leaks/judged.jsonl" "$HONE_ROOT/bench/results/leaks.json" "$HONE_ROOT/bench/RESULTS.md"
