#!/usr/bin/env bash
# bench/defences poison: backdoor (insertion-trigger) poisoning of BANKING77 and hone's poisoning scan.
# The trigger word (default "cf") is inserted at a seeded random word position into 1% of the training
# texts, which are relabelled to one seeded target intent (never one of their own labels). hone's `ngram`
# model is trained without defence and after dropping the suspects of hone_defend::poison::scan; figures:
# clean test accuracy and attack success rate (ASR: share of non-target test texts with the trigger
# inserted that are predicted as the target), scan precision/recall against the poisoned ids, clean records
# removed, and the scan on the clean training set. Peer: scikit-learn TF-IDF + LogisticRegression on the
# same poisoned data, without and with the same removal.
# Called by bench/defences/run.sh with HONE_ROOT, HONE_SHARED, BENCH_WORK, BENCH_PY. Overrides: POISON_BIN,
# POISON_SEEDS (comma-separated, default 1,2,3; >= 3 recommended), POISON_RATE (default 0.01),
# POISON_TRIGGER (default cf), POISON_PEER (1/0, default 1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${HONE_ROOT:?run via bench/defences/run.sh}" "${HONE_SHARED:?}" "${BENCH_WORK:?}" "${BENCH_PY:?}"
bin=${POISON_BIN:-$HONE_ROOT/target/release/examples/poison_bench}
seeds=${POISON_SEEDS:-1,2,3}
rate=${POISON_RATE:-0.01}
trigger=${POISON_TRIGGER:-cf}
peer=${POISON_PEER:-1}
[ -x "$bin" ] || { echo "poison: $bin not found (build the hone-defend examples in release)" >&2; exit 2; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0
d="$HONE_SHARED/datasets/banking77"
work="$BENCH_WORK/poison"
mkdir -p "$work"
echo "poison: hone (seeds $seeds, rate $rate, trigger $trigger)" >&2
"$bin" --train "$d/train.jsonl" --test "$d/test.jsonl" --seeds "$seeds" --rate "$rate" \
  --trigger "$trigger" --threads 2 --dump "$work" > "$work/hone.json"
: > "$work/peer.jsonl"
if [ "$peer" = 1 ]; then
  for s in ${seeds//,/ }; do
    echo "poison: peer seed $s" >&2
    "$BENCH_PY" "$here/poison_peer.py" --dump "$work" --test "$d/test.jsonl" --seed "$s" >> "$work/peer.jsonl"
  done
fi

# The frozen-encoder model on the same poisoned sets and the same removal (POISON_ENCODER=0 skips it;
# needs models/all-MiniLM-L6-v2 from scripts/get-minilm).
: > "$work/encoder.json"
if [ "${POISON_ENCODER:-1}" = 1 ] && [ -x "$HONE_ROOT/target/release/examples/encoder_bench" ]; then
  "$HONE_ROOT/scripts/get-minilm" >&2
  echo "poison: frozen MiniLM + head on the same poisoned sets" >&2
  "$HONE_ROOT/target/release/examples/encoder_bench" poison --dump "$work" --test "$d/test.jsonl" \
    --seeds "$seeds" --threads 2 > "$work/encoder.json"
fi

mkdir -p "$HONE_ROOT/bench/results"
"$BENCH_PY" - "$work/hone.json" "$work/peer.jsonl" "$work/encoder.json" "$HONE_ROOT/bench/results/defences_poison.json" \
  "$HONE_ROOT/bench/RESULTS.md" <<'PY'
import datetime, json, os, statistics, subprocess, sys
hone_path, peer_path, enc_path, json_path, md_path = sys.argv[1:6]
h = json.load(open(hone_path))
enc_text = open(enc_path).read().strip()
enc = json.loads(enc_text) if enc_text else None
peer = [json.loads(l) for l in open(peer_path) if l.strip()]
runs = h["runs"]
def mm(xs):
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}
g = lambda side, k: mm([r[side][k] for r in runs])
s = lambda k: mm([r["scan"][k] for r in runs])
asr_cut = [r["no_defence"]["asr"] / max(r["defended"]["asr"], 1.0 / r["n_triggered_test"]) for r in runs]
acc_cost = [100 * (r["no_defence"]["accuracy"] - r["defended"]["accuracy"]) for r in runs]
try:
    commit = subprocess.run(["git", "-C", os.path.dirname(os.path.dirname(md_path)), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or None
except OSError:
    commit = None
summary = {
    "no_defence": {"accuracy": g("no_defence", "accuracy"), "asr": g("no_defence", "asr")},
    "defended": {"accuracy": g("defended", "accuracy"), "asr": g("defended", "asr")},
    "clean_model": {"accuracy": g("clean_model", "accuracy"), "asr": g("clean_model", "asr")},
    "asr_cut_x": mm(asr_cut), "accuracy_cost_pt": mm(acc_cost),
    "scan": {k: s(k) for k in ["precision", "recall", "clean_removed", "flagged", "seconds"]},
    "clean_scan": h["clean_scan"],
}
summary["goal_met"] = min(asr_cut) >= 10 and max(acc_cost) <= 0.5
if enc:
    er = enc["runs"]
    e_cut = [r["no_defence"]["asr"] / max(r["defended"]["asr"], 1.0 / r["n_triggered_test"]) for r in er]
    e_cost = [100 * (r["no_defence"]["accuracy"] - r["defended"]["accuracy"]) for r in er]
    summary["frozen_encoder"] = {
        "model": "all-MiniLM-L6-v2 frozen, mean + normalise, L-BFGS softmax head C=%s" % enc["c"],
        "no_defence": {k: mm([r["no_defence"][k] for r in er]) for k in ["accuracy", "asr"]},
        "defended": {k: mm([r["defended"][k] for r in er]) for k in ["accuracy", "asr"]},
        "asr_cut_x": mm(e_cut), "accuracy_cost_pt": mm(e_cost),
        "goal_met": min(e_cut) >= 10 and max(e_cost) <= 0.5}
if peer:
    summary["peer"] = {side: {k: mm([p[side][k] for p in peer]) for k in ["accuracy", "asr"]}
                       for side in ["no_defence", "defended"]}
res = {"bench": "defences_poison", "date": datetime.date.today().isoformat(), "commit": commit,
       "setup": {"dataset": "banking77", "trigger": h["trigger"], "rate": h["rate"], "seeds": [r["seed"] for r in runs],
                 "model": "hone ngram (default NgramConfig, 2 threads)", "poison_config": h["poison_config"],
                 "asr": "share of non-target test texts with the trigger inserted predicted as the target"},
       "summary": summary, "runs": runs, "peer_runs": peer, "encoder_runs": enc["runs"] if enc else None}
json.dump(res, open(json_path, "w"), indent=2)
date, n = res["date"], len(runs)
f = lambda d, fmt: (fmt % d["min"]) + " / " + (fmt % d["median"])
sm = summary
pa = lambda side, k: f(sm["peer"][side][k], "%.3f") if peer else "–"
md = [
    f"| {date} | defences | poison: ASR, BANKING77 1% `{h['trigger']}` trigger, no defence → scan removal (min / median of {n}) | "
    f"{f(sm['no_defence']['asr'], '%.3f')} → {f(sm['defended']['asr'], '%.4f')} | LogReg {pa('no_defence', 'asr')} → {pa('defended', 'asr')} | "
    f"ASR cut {f(sm['asr_cut_x'], '%.0f')}x | hone ngram; goal >=10x at <=0.5 pt: {'met' if sm['goal_met'] else 'NOT met'}; commit {commit} |",
    f"| {date} | defences | poison: clean test accuracy, no defence → scan removal (min / median of {n}) | "
    f"{f(sm['no_defence']['accuracy'], '%.4f')} → {f(sm['defended']['accuracy'], '%.4f')} | LogReg {pa('no_defence', 'accuracy')} → {pa('defended', 'accuracy')} | "
    f"cost {f(sm['accuracy_cost_pt'], '%+.2f')} pt | unpoisoned hone model {sm['clean_model']['accuracy']['median']:.4f} |",
    f"| {date} | defences | poison: scan precision / recall vs poisoned ids (min / median of {n}) | "
    f"P {f(sm['scan']['precision'], '%.3f')}; R {f(sm['scan']['recall'], '%.3f')} | – | – | "
    f"clean records removed {f(sm['scan']['clean_removed'], '%d')} of {runs[0]['n_train'] - runs[0]['n_poison']}; "
    f"clean train set: {h['clean_scan']['flagged']} of {h['clean_scan']['n_train']} flagged; scan {sm['scan']['seconds']['median']:.2f} s |",
]
if enc:
    fe = sm["frozen_encoder"]
    md.append(f"| {date} | defences | poison, frozen MiniLM + head: ASR no defence → scan removal; clean accuracy (min / median of {n}) | "
              f"{f(fe['no_defence']['asr'], '%.3f')} → {f(fe['defended']['asr'], '%.4f')}; {f(fe['no_defence']['accuracy'], '%.4f')} → {f(fe['defended']['accuracy'], '%.4f')} | – | "
              f"ASR cut {f(fe['asr_cut_x'], '%.0f')}x, cost {f(fe['accuracy_cost_pt'], '%+.2f')} pt | goal >=10x at <=0.5 pt: {'met' if fe['goal_met'] else 'NOT met'} |")
if not os.path.exists(md_path):
    with open(md_path, "w") as fh:
        fh.write("| date | bench | figure | hone | peer | ratio | notes |\n|---|---|---|---|---|---|---|\n")
with open(md_path, "a") as fh:
    fh.write("\n".join(md) + "\n")
print("\n".join(md))
PY
