"""bench/defaults: near_duplicates x fold_dev on the shared classification sets, through `hone run`."""
import datetime, json, os, shutil, subprocess, sys

hone, datasets, work, out_json, results_md = sys.argv[1:6]
SETS = {
    "banking77": ("banking77/train.jsonl", "banking77/test.jsonl"),
    "trec": ("trec/train.jsonl", "trec/test.jsonl"),
    "sms_spam": ("sms_spam/derived_train.jsonl", "sms_spam/derived_test.jsonl"),
    # No official test split: every fifth record (by line) is the test source.
    "bitext": ("bitext_customer_support/train.jsonl", "every-fifth"),
}
SETTINGS = [(nd, fd) for nd in ("drop", "keep") for fd in (False, True)]


def run(name, nd, fd):
    tr, te = SETS[name]
    d = os.path.join(work, f"{name}-{nd}-{'fold' if fd else 'nofold'}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "data"))
    if te == "every-fifth":
        lines = open(os.path.join(datasets, tr)).read().splitlines(keepends=True)
        open(os.path.join(d, "data/train.jsonl"), "w").writelines(l for i, l in enumerate(lines) if i % 5)
        open(os.path.join(d, "data/test.jsonl"), "w").writelines(l for i, l in enumerate(lines) if not i % 5)
    else:
        shutil.copy(os.path.join(datasets, tr), os.path.join(d, "data/train.jsonl"))
        shutil.copy(os.path.join(datasets, te), os.path.join(d, "data/test.jsonl"))
    toml = f'[task]\nname = "{name}"\nkind = "classify"\n\n[[source]]\nname = "train"\npath = "data/train.jsonl"\n'
    if te:
        toml += '\n[[source]]\nname = "test"\npath = "data/test.jsonl"\nrole = "test"\n'
    toml += (f'\n[policy]\ncontamination = "drop_train"\nnear_duplicates = "{nd}"\n'
             f'\n[split]\nfold_dev = {"true" if fd else "false"}\n'
             '\n[[model]]\nname = "baseline"\nkind = "ngram"\n')
    open(os.path.join(d, "hone.toml"), "w").write(toml)
    p = subprocess.run([hone, "-C", d, "--json", "run"], capture_output=True, text=True)
    if p.returncode not in (0, 3):
        sys.exit(f"hone run failed in {d}: {p.stderr}")
    v = json.loads(p.stdout)
    # Test accuracy from `hone predict` on the frozen test records (their masked texts, as stored).
    shown = json.loads(subprocess.run([hone, "-C", d, "--json", "data", "show", "--limit", "10000000"],
                                      capture_output=True, text=True, check=True).stdout)
    rows = [r for r in shown if r.get("source") == "test"]
    inp = os.path.join(d, "test-input.jsonl")
    with open(inp, "w") as f:
        for r in rows:
            f.write(json.dumps({"id": r["id"], "text": r["text"]}) + "\n")
    pred = subprocess.run([hone, "-C", d, "predict", inp], capture_output=True, text=True, check=True)
    preds = {j["id"]: j["label"] for j in map(json.loads, pred.stdout.splitlines())}
    gold = {r["id"]: r["label"] for r in rows}
    acc = sum(preds[i] == gold[i] for i in gold) / len(gold)
    m = v["metrics"]
    return {"accuracy_predict": acc, "accuracy_report": m["accuracy"]["estimate"], "ece": m["ece"],
            "n_test": m["n"], "n_predicted": len(gold)}


res = {"bench": "defaults", "date": datetime.date.today().isoformat(), "sets": {}}
for name in SETS:
    res["sets"][name] = {}
    for nd, fd in SETTINGS:
        r = run(name, nd, fd)
        key = f"near_duplicates={nd}, fold_dev={str(fd).lower()}"
        res["sets"][name][key] = r
        print(f"{name:<10} {key:<40} accuracy {r['accuracy_predict']:.4f} (report {r['accuracy_report']:.4f}, "
              f"n {r['n_predicted']}/{r['n_test']})  ECE {r['ece']:.4f}", flush=True)
res["commit"] = subprocess.run(["git", "-C", os.path.dirname(results_md), "rev-parse", "--short", "HEAD"],
                               capture_output=True, text=True).stdout.strip() or None
json.dump(res, open(out_json, "w"), indent=2)
with open(results_md, "a") as fh:
    for name, per in res["sets"].items():
        cells = "; ".join(f"{k}: {r['accuracy_predict']:.4f} (ECE {r['ece']:.4f})" for k, r in per.items())
        fh.write(f"| {res['date']} | defaults | {name}: test accuracy from `hone predict` | {cells} | – | – | "
                 f"`hone run`, ngram, drop_train; commit {res['commit']} |\n")
