#!/usr/bin/env bash
# bench/export: hone's exports loaded back by Python. For each kind, hone fine-tunes all-MiniLM-L6-v2 for
# one epoch on 400 seeded BANKING77 training texts (so every tensor differs from the base model), exports it
# and writes its own outputs for 64 test texts; bench/export/check.py loads the directory with
# transformers.AutoModelForSequenceClassification (kind cls; logits within 1e-4) or sentence-transformers
# (kind mean; embeddings within 1e-5) and fails above tolerance. This script fails if either check fails.
# Run via bench/run export (HONE_ROOT, HONE_SHARED, BENCH_WORK, BENCH_PY).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${HONE_ROOT:?run via bench/run}" "${HONE_SHARED:?}" "${BENCH_WORK:?}" "${BENCH_PY:?}"
bin=${ENCODER_BIN:-$HONE_ROOT/target/release/examples/encoder_bench}
model=$HONE_ROOT/models/all-MiniLM-L6-v2
"$HONE_ROOT/scripts/get-minilm" >&2
BENCH_PY="$BENCH_PY" bash "$HONE_ROOT/bench/encoder/install.sh" >&2
d="$HONE_SHARED/datasets/banking77"
out="$BENCH_WORK/checks.jsonl"
: > "$out"
status=0
for kind in cls mean; do
  tol=1e-4; [ "$kind" = mean ] && tol=1e-5
  dir="$BENCH_WORK/$kind"
  rm -rf "$dir"
  echo "export: hone writes the $kind export" >&2
  "$bin" export --model "$model" --train "$d/train.jsonl" --test "$d/test.jsonl" --out "$dir" --kind "$kind" \
    --limit 400 --n 64 --threads 2 >&2
  echo "export: Python loads it" >&2
  if ! "$BENCH_PY" "$here/check.py" --kind "$kind" --dir "$dir" --expect "$dir/expected.jsonl" --tol "$tol" >> "$out"; then
    status=1
  fi
done
mkdir -p "$HONE_ROOT/bench/results"
"$BENCH_PY" - "$out" "$HONE_ROOT/bench/results/export.json" "$HONE_ROOT/bench/RESULTS.md" <<'PY'
import datetime, json, os, subprocess, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
commit = subprocess.run(["git", "-C", os.path.dirname(os.path.dirname(sys.argv[3])), "rev-parse", "--short", "HEAD"],
                        capture_output=True, text=True).stdout.strip() or None
json.dump({"bench": "export", "date": datetime.date.today().isoformat(), "commit": commit, "checks": rows},
          open(sys.argv[2], "w"), indent=1)
md = [f"\n## export — {datetime.date.today().isoformat()} (commit {commit})\n",
      "| kind | loaded by | texts | max abs diff | tolerance | ok |", "|---|---|---|---|---|---|"]
for r in rows:
    by = "transformers AutoModelForSequenceClassification (logits)" if r["kind"] == "cls" else "sentence-transformers (embeddings)"
    md.append(f"| {r['kind']} | {by} | {r['n']} | {r['max_abs_diff']:.2e} | {r['tol']:.0e} | {r['ok']} |")
open(sys.argv[3], "a").write("\n".join(md) + "\n")
print(json.dumps(rows))
PY
exit $status
