#!/usr/bin/env bash
# bench/pii: PII scan throughput of hone's masker, one thread, on real texts from ../shared (BANKING77,
# SMS Spam, Bitext, TREC, GSM8K) and on the PII-dense fixture. No peer: the figure is MB/s.
set -euo pipefail
: "${HONE_ROOT:?run via bench/run}" "${HONE_SHARED:?}" "${BENCH_WORK:?}" "${BENCH_PY:?}"
bin="$HONE_ROOT/target/release/examples/pii_throughput"
out=$("$bin" --shared "$HONE_SHARED" --reps "${PII_REPS:-7}")
echo "$out"
"$BENCH_PY" - "$out" "$HONE_ROOT/bench/results/pii.json" "$HONE_ROOT/bench/RESULTS.md" <<'PY'
import datetime, json, os, subprocess, sys
res = json.loads(sys.argv[1]); json_path, md_path = sys.argv[2], sys.argv[3]
res["bench"] = "pii"; res["date"] = datetime.date.today().isoformat()
res["commit"] = subprocess.run(["git", "-C", os.path.dirname(os.path.dirname(md_path)), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or None
json.dump(res, open(json_path, "w"), indent=2)
if not os.path.exists(md_path):
    open(md_path, "w").write("| date | bench | figure | hone | peer | ratio | notes |\n|---|---|---|---|---|---|---|\n")
r, f = res["real_texts"], res["fixture_all_pii"]
with open(md_path, "a") as fh:
    fh.write(f"| {res['date']} | pii | MB/s, 1 thread, min / median | real texts {r['mb_per_s_min']:.1f} / {r['mb_per_s_median']:.1f}; fixture (all PII) {f['mb_per_s_min']:.1f} / {f['mb_per_s_median']:.1f} | – | – | {r['texts']} real texts ({r['mb']:.1f} MB), {f['texts']} fixture texts; commit {res['commit']} |\n")
PY
