"""bench/lm stage 5, the comparison: hone's test answers (base and LoRA, from the project's store, as
`hone run` stored them) and the transformers + peft peer's answers on the same test set, scored by the
same code (ROUGE-L F from `rouge-score`, sentence chrF from `sacrebleu`: the packages hone's own metrics
are checked against in crates/hone-eval/tests), with 95% bootstrap intervals and a paired bootstrap of
hone − peer. Also training step time and peak memory of both sides.

    python compare_finetune.py PROJECT RECORDS.json PEER_DIR HONE_TIME_FILE RESULTS.json RESULTS.md
"""
import datetime
import json
import pathlib
import random
import re
import sqlite3
import sys

from rouge_score import rouge_scorer
from sacrebleu.metrics import CHRF

project, records_path, peer_dir, time_file, results_path, md_path = sys.argv[1:7]
project, peer_dir = pathlib.Path(project), pathlib.Path(peer_dir)
refs = {r["id"]: r["label"] for r in json.load(open(records_path))}
db = sqlite3.connect(project / ".hone" / "hone.db")


def run_of(model):
    row = db.execute("select record from runs where model = ? order by seq desc limit 1", (model,)).fetchone()
    return json.loads(row[0])


def answers_of(record):
    h = record["predictions"]
    preds = json.loads((project / ".hone" / "objects" / h[:2] / h[2:]).read_bytes())
    return {p["id"]: p["completion"] for p in preds["generated"]}


rouge = rouge_scorer.RougeScorer(["rougeL"])
chrf = CHRF()


def scores(answers):
    ids = sorted(answers)
    return ids, {
        "rouge_l": [rouge.score(refs[i], answers[i])["rougeL"].fmeasure for i in ids],
        "chrf": [chrf.sentence_score(answers[i], [refs[i]]).score / 100 for i in ids],
    }


def boot(values, n=2000, seed=0):
    rng = random.Random(seed)
    k = len(values)
    means = sorted(sum(values[rng.randrange(k)] for _ in range(k)) / k for _ in range(n))
    return [sum(values) / k, means[int(0.025 * n)], means[int(0.975 * n) - 1]]


def paired(a, b, n=2000, seed=1):
    return boot([x - y for x, y in zip(a, b)], n, seed)


hone_lora = run_of("lora")
hone_base = run_of("base")
peer = json.load(open(peer_dir / "peer.json"))
peer_answers = {a["id"]: a["completion"] for a in map(json.loads, open(peer_dir / "peer-answers.jsonl"))}
sides = {"base (hone)": answers_of(hone_base), "lora (hone)": answers_of(hone_lora), "lora (peer)": peer_answers}
if db.execute("select 1 from runs where model = 'sft'").fetchone():
    sides["sft (hone)"] = answers_of(run_of("sft"))
common = set.intersection(*(set(a) for a in sides.values()))
table = {}
for name, ans in sides.items():
    ids, s = scores({i: ans[i] for i in common})
    table[name] = {m: boot(v) for m, v in s.items()} | {"_values": s}
delta = {m: paired(table["lora (hone)"]["_values"][m], table["lora (peer)"]["_values"][m])
         for m in ("rouge_l", "chrf")}
gain = {m: paired(table["lora (hone)"]["_values"][m], table["base (hone)"]["_values"][m])
        for m in ("rouge_l", "chrf")}
def find_lm_report(node):
    """The LoRA run's language-model training report, wherever the record's enum nests it."""
    if isinstance(node, dict):
        if "train_loop_seconds" in node:
            return node
        for v in node.values():
            if (found := find_lm_report(v)) is not None:
                return found
    return None


hone_train = find_lm_report(hone_lora.get("train", {}))
time_text = open(time_file).read()
rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_text)
hone_rss_mib = int(rss.group(1)) // 1024 if rss else None
result = {
    "stage": "finetune",
    "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "test_examples": len(common),
    "scores": {k: {m: v for m, v in t.items() if m != "_values"} for k, t in table.items()},
    "corpus_chrf": {k: chrf.corpus_score([sides[k][i] for i in sorted(common)],
                                         [[refs[i] for i in sorted(common)]]).score / 100 for k in sides},
    "hone_minus_peer": delta,
    "lora_minus_base_hone": gain,
    "hone_reported": {k: hone_lora["generation"]["test"].get(k) for k in ("rouge_l", "chrf")},
    "hone_train": hone_train and {k: hone_train.get(k) for k in
                                  ("steps", "train_loop_seconds", "micro_batch", "activation_bytes")},
    "hone_peak_rss_mib_whole_run": hone_rss_mib,
    "peer": {k: peer[k] for k in ("threads", "steps", "step_min", "step_median", "train_seconds",
                                  "peak_rss_mib_after_training", "peak_rss_mib", "generate_seconds")},
}
if hone_train and hone_train.get("train_loop_seconds"):
    result["step_seconds_mean"] = {
        "hone": hone_train["train_loop_seconds"] / max(1, hone_train["steps"]),
        "peer": peer["train_seconds"] / max(1, peer["steps"]),
    }
    result["step_ratio_hone_over_peer"] = result["step_seconds_mean"]["hone"] / result["step_seconds_mean"]["peer"]
res = json.load(open(results_path)) if pathlib.Path(results_path).exists() else {}
res["finetune"] = result
json.dump(res, open(results_path, "w"), indent=1)
print(json.dumps(result, indent=1))
fmt = lambda v: f"{v[0]:.4f} [{v[1]:.4f}, {v[2]:.4f}]"
day = result["at"][:10]
lines = [
    f"| {day} | lm | LoRA fine-tuning, Bitext replies ({len(common)} test answers, same records, split and recipe), "
    f"ROUGE-L | {fmt(table['lora (hone)']['rouge_l'])} | {fmt(table['lora (peer)']['rouge_l'])} | "
    f"hone − peer {fmt(delta['rouge_l'])} | base {fmt(table['base (hone)']['rouge_l'])}; chrF hone − peer "
    f"{fmt(delta['chrf'])} |",
    f"| {day} | lm | LoRA fine-tuning run: mean step (8 × ≤256 tokens, 2 threads) and peak RSS | "
    f"{result.get('step_seconds_mean', {}).get('hone', float('nan')):.2f} s, {hone_rss_mib} MiB (whole `hone run`) | "
    f"{result.get('step_seconds_mean', {}).get('peer', float('nan')):.2f} s, {peer['peak_rss_mib_after_training']} MiB | "
    f"{result.get('step_ratio_hone_over_peer', float('nan')):.3f}x | hone micro-batch "
    f"{(hone_train or {}).get('micro_batch')} |",
]
with open(md_path, "a") as f:
    f.write("\n".join(lines) + "\n")
