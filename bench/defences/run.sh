#!/usr/bin/env bash
# bench/defences: the label-issue finder vs cleanlab (BANKING77, 10% labels flipped) and the poisoning scan
# (BANKING77, trigger "cf" in 1% of training texts). Each part writes its own results file and rows.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/label_run.sh"
bash "$here/poison_run.sh"
"$HONE_ROOT/target/release/examples/abstain_bench" --shared "$HONE_SHARED" --seed 7 > "$BENCH_WORK/abstain.jsonl"
for s in 8 9; do "$HONE_ROOT/target/release/examples/abstain_bench" --shared "$HONE_SHARED" --seed "$s" >> "$BENCH_WORK/abstain.jsonl"; done
"$BENCH_PY" - "$BENCH_WORK/abstain.jsonl" "$HONE_ROOT/bench/results/defences_abstain.json" "$HONE_ROOT/bench/RESULTS.md" <<'PY'
import datetime, json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
res = {"bench": "defences_abstain", "date": datetime.date.today().isoformat(), "runs": rows,
       "out_of_scope_refused_min": min(r["out_of_scope_refused"] for r in rows),
       "out_of_scope_refused_median": statistics.median(r["out_of_scope_refused"] for r in rows),
       "accuracy_cost_points_min": min(r["accuracy_cost_points"] for r in rows),
       "accuracy_cost_points_median": statistics.median(r["accuracy_cost_points"] for r in rows)}
json.dump(res, open(sys.argv[2], "w"), indent=2)
with open(sys.argv[3], "a") as f:
    f.write(f"| {res['date']} | defences | abstention: out-of-scope refused (min / median, 3 seeds) | {res['out_of_scope_refused_min']:.3f} / {res['out_of_scope_refused_median']:.3f} | – | – | BANKING77 in scope, 500 TREC + 500 GSM8K out of scope; threshold chosen on dev for <= 1 pt; test in-scope cost {res['accuracy_cost_points_min']:.2f} / {res['accuracy_cost_points_median']:.2f} pt |\n")
PY
