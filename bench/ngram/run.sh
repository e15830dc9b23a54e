#!/usr/bin/env bash
# bench/ngram: hone's built-in `ngram` text classifier (hashed word 1-2 + char_wb 2-5 sublinear TF-IDF,
# one-vs-rest L2-SVM by dual coordinate descent, temperature softmax) vs scikit-learn TF-IDF + LinearSVC()
# and fastText (fasttext-wheel, wordNgrams=2, epoch=50), on banking77, TREC (coarse) and SMS Spam.
# Run via bench/run ngram (which exports HONE_ROOT, HONE_SHARED, BENCH_WORK, BENCH_PY and builds the
# examples). Overrides: NGRAM_BIN (example binary), NGRAM_REPS (rounds, default 3, min 3 recommended),
# NGRAM_DATASETS (space-separated subset of: banking77 trec sms_spam).
# Per round and dataset, interleaved: hone with 1 thread, hone with 2 threads, LinearSVC (1 thread),
# fastText (training with thread=2; python `predict` on the list of texts is single-threaded).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${HONE_ROOT:?run via bench/run}" "${HONE_SHARED:?}" "${BENCH_WORK:?}" "${BENCH_PY:?}"
bin=${NGRAM_BIN:-$HONE_ROOT/target/release/examples/ngram_bench}
reps=${NGRAM_REPS:-3}
datasets=${NGRAM_DATASETS:-banking77 trec sms_spam}
[ -x "$bin" ] || { echo "ngram: $bin not found (build the hone-model examples in release)" >&2; exit 2; }

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMEXPR_NUM_THREADS=1 \
  VECLIB_MAXIMUM_THREADS=1 RAYON_NUM_THREADS=1 PYTHONHASHSEED=0

files() {
  local d="$HONE_SHARED/datasets/$1"
  case "$1" in
    banking77) echo "$d/train.jsonl $d/test.jsonl" ;;
    trec) echo "$d/train.jsonl $d/test.jsonl" ;;
    sms_spam) echo "$d/derived_train.jsonl $d/derived_test.jsonl" ;;
    *) echo "ngram: unknown dataset $1" >&2; exit 2 ;;
  esac
}

mkdir -p "$BENCH_WORK"
out="$BENCH_WORK/runs.jsonl"
: > "$out"
tag() { sed "s/^{/{\"dataset\":\"$1\",\"side\":\"$2\",\"round\":$3,/"; }
for i in $(seq 1 "$reps"); do
  for ds in $datasets; do
    read -r train test < <(files "$ds")
    echo "ngram: round $i/$reps $ds" >&2
    "$bin" --train "$train" --test "$test" --threads 1 --reps 1 | tag "$ds" hone_1t "$i" >> "$out"
    "$bin" --train "$train" --test "$test" --threads 2 --reps 1 | tag "$ds" hone_2t "$i" >> "$out"
    "$BENCH_PY" "$here/peers.py" --peer svc --train "$train" --test "$test" --work "$BENCH_WORK" \
      | tag "$ds" svc "$i" >> "$out"
    "$BENCH_PY" "$here/peers.py" --peer fasttext --threads 2 --train "$train" --test "$test" \
      --work "$BENCH_WORK" | tag "$ds" fasttext "$i" >> "$out"
  done
done

mkdir -p "$HONE_ROOT/bench/results"
"$BENCH_PY" - "$out" "$HONE_ROOT/bench/results/ngram.json" "$HONE_ROOT/bench/RESULTS.md" <<'PY'
import datetime, json, os, statistics, subprocess, sys
runs_path, json_path, md_path = sys.argv[1:4]
rows = [json.loads(l) for l in open(runs_path) if l.strip()]
for r in rows:  # hone rows carry per-run lists; one rep each
    if r["side"].startswith("hone"):
        r["train_seconds"] = r["train_seconds_min"]
        r["predict_texts_per_s"] = r["predict_texts_per_s_median"]
def summ(rs, k):
    xs = [r[k] for r in rs]
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}
try:
    commit = subprocess.run(["git", "-C", os.path.dirname(os.path.dirname(md_path)), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or None
except OSError:
    commit = None
res = {"bench": "ngram", "date": datetime.date.today().isoformat(), "commit": commit,
       "peers": {"svc": "sklearn FeatureUnion(TfidfVectorizer(ngram_range=(1,2)), TfidfVectorizer(analyzer='char_wb', ngram_range=(2,5))), sublinear_tf + LinearSVC()",
                 "fasttext": "fasttext-wheel train_supervised(wordNgrams=2, epoch=50, thread=2); predict(list) single-threaded"},
       "goal": {"accuracy": ">= LinearSVC", "train_seconds": "<= 1 (2 threads)", "predict_ratio_vs_fasttext": ">= 2"},
       "datasets": {}, "runs": rows}
md = []
date = res["date"]
all_met = True
for ds in dict.fromkeys(r["dataset"] for r in rows):
    sides = {}
    for side in ["hone_1t", "hone_2t", "svc", "fasttext"]:
        rs = [r for r in rows if r["dataset"] == ds and r["side"] == side]
        if not rs:
            continue
        s = {k: summ(rs, k) for k in ["accuracy", "macro_f1", "train_seconds", "predict_texts_per_s",
                                         "latency_us_p50", "latency_us_p95"]}
        s["n"] = len(rs)
        if side.startswith("hone"):
            s["chosen_l2"] = rs[0]["chosen_l2"]; s["best_epoch"] = rs[0]["best_epoch"]
            s["refit_epochs"] = rs[0]["refit_epochs"]; s["n_features_nonzero"] = rs[0]["n_features_nonzero"]
        sides[side] = s
    h1, h2, svc, ft = (sides.get(k) for k in ["hone_1t", "hone_2t", "svc", "fasttext"])
    d = {"sides": sides}
    if h1 and h2 and svc and ft:
        d["accuracy_minus_svc"] = h2["accuracy"]["median"] - svc["accuracy"]["median"]
        d["predict_ratio_vs_fasttext_median"] = h2["predict_texts_per_s"]["median"] / ft["predict_texts_per_s"]["median"]
        d["predict_ratio_vs_fasttext_1t_median"] = h1["predict_texts_per_s"]["median"] / ft["predict_texts_per_s"]["median"]
        d["goal_met"] = (d["accuracy_minus_svc"] >= 0 and h2["train_seconds"]["median"] <= 1.0
                         and d["predict_ratio_vs_fasttext_median"] >= 2)
        all_met &= d["goal_met"]
        n = h2["n"]
        f = lambda s, k, fmt: (fmt % s[k]["min"]) + " / " + (fmt % s[k]["median"])
        md.append(f"| {date} | ngram | {ds} test accuracy (min / median of {n}) | {f(h2, 'accuracy', '%.4f')} | "
                  f"LinearSVC {f(svc, 'accuracy', '%.4f')}; fastText {f(ft, 'accuracy', '%.4f')} | "
                  f"{h2['accuracy']['median'] / svc['accuracy']['median']:.3f}x vs SVC | macro-F1 hone {h2['macro_f1']['median']:.4f}, SVC {svc['macro_f1']['median']:.4f}; commit {commit} |")
        md.append(f"| {date} | ngram | {ds} train s, wall (min / median) | 2t {f(h2, 'train_seconds', '%.3f')}; 1t {f(h1, 'train_seconds', '%.3f')} | "
                  f"LinearSVC {f(svc, 'train_seconds', '%.3f')}; fastText(2t) {f(ft, 'train_seconds', '%.3f')} | "
                  f"{svc['train_seconds']['median'] / h2['train_seconds']['median']:.1f}x faster than SVC | hone incl. featurising, l2 grid, early stopping, refit; l2={h2['chosen_l2']} |")
        md.append(f"| {date} | ngram | {ds} predict texts/s, batch (min / median) | 2t {f(h2, 'predict_texts_per_s', '%.0f')}; 1t {f(h1, 'predict_texts_per_s', '%.0f')} | "
                  f"fastText {f(ft, 'predict_texts_per_s', '%.0f')}; LinearSVC {f(svc, 'predict_texts_per_s', '%.0f')} | "
                  f"{d['predict_ratio_vs_fasttext_median']:.2f}x (1t {d['predict_ratio_vs_fasttext_1t_median']:.2f}x) vs fastText | "
                  f"1-text latency p50/p95 us: hone {h1['latency_us_p50']['median']:.1f}/{h1['latency_us_p95']['median']:.1f}, fastText {ft['latency_us_p50']['median']:.1f}/{ft['latency_us_p95']['median']:.1f} |")
    res["datasets"][ds] = d
res["goal_met"] = all_met
json.dump(res, open(json_path, "w"), indent=2)
if not os.path.exists(md_path):
    with open(md_path, "w") as fh:
        fh.write("| date | bench | figure | hone | peer | ratio | notes |\n|---|---|---|---|---|---|---|\n")
with open(md_path, "a") as fh:
    fh.write("\n".join(md) + "\n")
print("\n".join(md))
PY
