#!/usr/bin/env bash
# bench/defences label issues: BANKING77 train with 10% of labels flipped (seeded) to another label.
# hone: out-of-fold n-gram probabilities (5 stratified folds, 2 fold seeds averaged, round 2 retrained
# without round 1's suspects) + label_issues::find_label_issues (default config); precision/recall of the
# flagged set vs the flipped ids, and ngram test accuracy on clean / noisy / noisy-minus-flagged /
# noisy-with-flagged-relabelled labels. Peers (label_peer.py): cleanlab.filter.find_label_issues (default
# args) on hone's SAME out-of-fold probabilities, and on scikit-learn TF-IDF + LogisticRegression
# out-of-fold probabilities (cross_val_predict, 5 folds).
# Env (from bench/run via defences/run.sh): HONE_ROOT HONE_SHARED BENCH_WORK BENCH_PY. Overrides:
# LABEL_BIN (example binary), LABEL_NOISE (0.1), LABEL_NOISE_SEED (1), LABEL_THREADS (2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${HONE_ROOT:?run via bench/run}" "${HONE_SHARED:?}" "${BENCH_WORK:?}" "${BENCH_PY:?}"
bin=${LABEL_BIN:-$HONE_ROOT/target/release/examples/label_bench}
[ -x "$bin" ] || { echo "labels: $bin not found (build the hone-defend examples in release)" >&2; exit 2; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0
d="$HONE_SHARED/datasets/banking77"
work="$BENCH_WORK/labels"
mkdir -p "$work" "$HONE_ROOT/bench/results"
echo "labels: hone (OOF, issues, 4 accuracy fits)" >&2
"$bin" --train "$d/train.jsonl" --test "$d/test.jsonl" --work "$work" --noise "${LABEL_NOISE:-0.1}" \
  --noise-seed "${LABEL_NOISE_SEED:-1}" --threads "${LABEL_THREADS:-2}" > "$work/hone.json"
echo "labels: peers (cleanlab on hone OOF; TF-IDF LR OOF + cleanlab; LR accuracy fits)" >&2
"$BENCH_PY" "$here/label_peer.py" --train "$d/train.jsonl" --test "$d/test.jsonl" --work "$work" > "$work/peer.json"

"$BENCH_PY" - "$work" "$HONE_ROOT/bench/results/defences_labels.json" "$HONE_ROOT/bench/RESULTS.md" <<'PY'
import datetime, json, os, subprocess, sys
work, json_path, md_path = sys.argv[1:4]
h = json.load(open(f"{work}/hone.json")); p = json.load(open(f"{work}/peer.json"))
meta = json.load(open(f"{work}/noisy.json"))
try:
    commit = subprocess.run(["git", "-C", os.path.dirname(os.path.dirname(md_path)), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or None
except OSError:
    commit = None
date = datetime.date.today().isoformat()
res = {"bench": "defences_labels", "date": date, "commit": commit, "dataset": "banking77",
       "noise": meta["noise"], "noise_seed": meta["noise_seed"], "flipped_ids": meta["flipped_ids"],
       "hone": h, "peers": p,
       "goal": {"precision": ">= 0.85", "recall": ">= 0.85"},
       "goal_met": h["precision"] >= 0.85 and h["recall"] >= 0.85}
json.dump(res, open(json_path, "w"), indent=2)
cl, lr = p["cleanlab_on_hone_oof"], p["cleanlab_on_tfidf_lr"]
f = lambda r: f"P {r['precision']:.3f} / R {r['recall']:.3f} ({r['flagged']} flagged)"
md = [f"| {date} | defences | banking77 label issues, 10% flipped: precision / recall | {f(h)} | cleanlab on same OOF {f(cl)}; cleanlab on TF-IDF LR OOF {f(lr)} | "
      f"P {h['precision'] / max(cl['precision'], 1e-9):.2f}x, R {h['recall'] / max(cl['recall'], 1e-9):.2f}x vs cleanlab same OOF | "
      f"hone {h['total_seconds']:.1f} s OOF+find (5 folds x 2 seeds x 2 rounds, 2 threads); LR OOF {lr['oof_seconds']:.1f} s; goal P,R >= 0.85 {'met' if res['goal_met'] else 'not met'}; commit {commit} |"]
a = h.get("accuracy", {})
if a:
    la = p.get("tfidf_lr_accuracy", {})
    g = lambda d: " / ".join(f"{d[k]:.4f}" for k in ["clean", "noisy", "removed", "relabelled"])
    md.append(f"| {date} | defences | banking77 test accuracy, train labels clean / noisy / noisy minus flagged / flagged relabelled | "
              f"ngram {g(a)} | TF-IDF LR + cleanlab {g(la) if la else 'n/a'} | removal recovers {(a['removed'] - a['noisy']) / max(a['clean'] - a['noisy'], 1e-9):.0%} of the noise loss (relabel {(a['relabelled'] - a['noisy']) / max(a['clean'] - a['noisy'], 1e-9):.0%}) | hone flags by its own finder, LR by cleanlab |")
if not os.path.exists(md_path):
    with open(md_path, "w") as fh:
        fh.write("| date | bench | figure | hone | peer | ratio | notes |\n|---|---|---|---|---|---|---|\n")
with open(md_path, "a") as fh:
    fh.write("\n".join(md) + "\n")
print("\n".join(md))
PY
