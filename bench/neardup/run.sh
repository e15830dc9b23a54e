#!/usr/bin/env bash
# bench/neardup: hone near_dup (MinHash + LSH + short-text containment) vs datasketch
# (MinHash.bulk + MinHashLSH), one thread each, on a 200k-document edited-copies corpus.
# Run via bench/run neardup (which exports HONE_ROOT, HONE_SHARED, BENCH_WORK, BENCH_PY and
# builds the examples). Overrides: NEARDUP_BIN (example binary), NEARDUP_N (corpus size),
# NEARDUP_RUNS (runs per side), NEARDUP_PEER_HASH (builtin|sha1 hashfunc for datasketch).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${HONE_ROOT:?run via bench/run}" "${HONE_SHARED:?}" "${BENCH_WORK:?}" "${BENCH_PY:?}"
bin=${NEARDUP_BIN:-$HONE_ROOT/target/release/examples/neardup_bench}
n=${NEARDUP_N:-200000}
runs=${NEARDUP_RUNS:-3}
peer_hash=${NEARDUP_PEER_HASH:-builtin}
[ -x "$bin" ] || { echo "neardup: $bin not found (build the hone-data examples in release)" >&2; exit 2; }

# One thread each.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMEXPR_NUM_THREADS=1 \
  VECLIB_MAXIMUM_THREADS=1 RAYON_NUM_THREADS=1 PYTHONHASHSEED=0

corpus="$BENCH_WORK/corpus.jsonl"
out="$BENCH_WORK/runs.jsonl"
"$bin" gen --shared "$HONE_SHARED" --out "$corpus" --n "$n" --seed 7
: > "$out"
for i in $(seq 1 "$runs"); do
  echo "neardup: round $i/$runs" >&2
  "$bin" run --corpus "$corpus" | sed 's/^{/{"side":"hone",/' >> "$out"
  "$bin" run --corpus "$corpus" --no-short | sed 's/^{/{"side":"hone_minhash_only",/' >> "$out"
  "$BENCH_PY" "$here/neardup.py" --corpus "$corpus" --hash "$peer_hash" | sed 's/^{/{"side":"datasketch",/' >> "$out"
done

mkdir -p "$HONE_ROOT/bench/results"
"$BENCH_PY" - "$out" "$HONE_ROOT/bench/results/neardup.json" "$HONE_ROOT/bench/RESULTS.md" "$peer_hash" <<'PY'
import datetime, json, statistics, subprocess, sys
runs_path, json_path, md_path, peer_hash = sys.argv[1:5]
rows = [json.loads(l) for l in open(runs_path) if l.strip()]
def side(name):
    rs = [r for r in rows if r["side"] == name]
    dps = [r["docs_per_sec"] for r in rs]
    return {"runs": rs, "docs_per_sec_min": min(dps), "docs_per_sec_median": statistics.median(dps)}
hone, mh, ds = side("hone"), side("hone_minhash_only"), side("datasketch")
ratio = hone["docs_per_sec_median"] / ds["docs_per_sec_median"]
ratio_mh = mh["docs_per_sec_median"] / ds["docs_per_sec_median"]
ratio_min = hone["docs_per_sec_min"] / ds["docs_per_sec_min"]
first = hone["runs"][0]
try:
    commit = subprocess.run(["git", "-C", md_path.rsplit("/bench/", 1)[0], "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or None
except OSError:
    commit = None
res = {
    "bench": "neardup",
    "date": datetime.date.today().isoformat(),
    "commit": commit,
    "n_docs": first["n_docs"],
    "threads": 1,
    "peer": "datasketch MinHash.bulk + MinHashLSH(threshold=0.8, num_perm=128), candidates verified by exact Jaccard",
    "peer_hashfunc": peer_hash,
    "hone_full": {k: v for k, v in hone.items() if k != "runs"},
    "hone_minhash_only": {k: v for k, v in mh.items() if k != "runs"},
    "datasketch": {k: v for k, v in ds.items() if k != "runs"},
    "ratio_median": ratio,
    "ratio_min": ratio_min,
    "ratio_minhash_only_median": ratio_mh,
    "recall_full": first["recall"],
    "recall_minhash_only": mh["runs"][0]["recall"],
    "recall_true_pairs": first["recall_true_pairs"],
    "goal": {"ratio_at_least": 20, "recall_at_least": 0.95},
    "runs": rows,
}
res["goal_met"] = ratio >= 20 and res["recall_full"] >= 0.95 and res["recall_minhash_only"] >= 0.95
json.dump(res, open(json_path, "w"), indent=2)
import os
if not os.path.exists(md_path):
    with open(md_path, "w") as f:
        f.write("| date | bench | figure | hone | peer | ratio | notes |\n|---|---|---|---|---|---|---|\n")
with open(md_path, "a") as f:
    f.write(f"| {res['date']} | neardup | docs/s end to end, 1 thread, median of {len(hone['runs'])} | "
            f"{hone['docs_per_sec_median']:,.0f} (MinHash-only {mh['docs_per_sec_median']:,.0f}) | "
            f"{ds['docs_per_sec_median']:,.0f} (datasketch, hash={peer_hash}) | {ratio:.1f}x (MinHash-only {ratio_mh:.1f}x) | "
            f"n={res['n_docs']}, recall {res['recall_full']:.3f} / {res['recall_minhash_only']:.3f} vs exact Jaccard>=0.8 on 2k-doc sample; commit {commit} |\n")
print(json.dumps({k: res[k] for k in ("n_docs", "hone_full", "hone_minhash_only", "datasketch", "ratio_median", "ratio_min", "ratio_minhash_only_median", "recall_full", "recall_minhash_only", "goal_met")}, indent=1))
PY
