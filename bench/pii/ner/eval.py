"""bench/pii (stage 2): names, addresses, places and organisations found by hone (`hone data show` on a
project of the evaluation set, default policy) and by Presidio + spaCy, typed overlap P/R/F2 per type,
and rows/s on one thread."""
import collections, datetime, json, os, re, shutil, subprocess, sys, time

hone, eval_path, work, out_json, peer_py = sys.argv[1:6]
TYPES = ["PERSON", "ADDRESS", "LOCATION", "ORG"]
rows = [json.loads(l) for l in open(eval_path)]


def hone_spans():
    d = os.path.join(work, "project")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "data"))
    with open(os.path.join(d, "data/eval.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps({"id": r["id"], "text": r["text"], "label": "x"}, ensure_ascii=False) + "\n")
    open(os.path.join(d, "hone.toml"), "w").write(
        '[task]\nname = "pii-eval"\nkind = "classify"\n\n[[source]]\nname = "eval"\npath = "data/eval.jsonl"\n\n'
        # LOCATION and ORG are opt-in (the default masks every other type): the set measures all four.
        '[policy]\npii_types = ["PERSON", "ADDRESS", "LOCATION", "ORG", "EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "SECRET", "URL"]\n')
    subprocess.run([hone, "-C", d, "data", "clean"], capture_output=True, check=True)
    shown = json.loads(subprocess.run([hone, "-C", d, "--json", "data", "show", "--limit", "1000000"],
                                      capture_output=True, text=True, check=True).stdout)
    masked = {r["id"]: r["text"] for r in shown}
    # Rows/s of the whole curation on one thread (reading, every pass), the eval set 20 times over.
    big = os.path.join(work, "speed")
    shutil.rmtree(big, ignore_errors=True)
    os.makedirs(os.path.join(big, "data"))
    with open(os.path.join(big, "data/eval.jsonl"), "w") as f:
        for k in range(20):
            for r in rows:
                f.write(json.dumps({"id": f"{k}-{r['id']}", "text": r["text"], "label": "x"}, ensure_ascii=False) + "\n")
    shutil.copy(os.path.join(d, "hone.toml"), big)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([hone, "-C", big, "--threads", "1", "data", "check"], capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    spans, failed = {}, 0
    for r in rows:
        m = masked.get(r["id"])
        if m is None:
            failed += 1
            spans[r["id"]] = []
            continue
        got, pos, ok = [], 0, True
        parts = re.split(r"(<[A-Z]+>)", m)
        orig = r["text"]
        pending = None
        for part in parts:
            if re.fullmatch(r"<[A-Z]+>", part):
                pending = (part[1:-1], pos)
                continue
            if pending:
                idx = orig.find(part, pos + 1) if part else len(orig)
                if idx < 0:
                    ok = False
                    break
                got.append([pending[0], pending[1], idx])
                pos, pending = idx, None
            if not orig.startswith(part, pos):
                ok = False
                break
            pos += len(part)
        if pending:
            got.append([pending[0], pending[1], len(orig)])
        failed += not ok
        spans[r["id"]] = got if ok else []
    return spans, failed, len(rows) * 20 / min(times), len(rows) * 20 / sorted(times)[1]


def score(pred):
    per = {t: collections.Counter() for t in TYPES}
    for r in rows:
        gold = r["spans"]
        p = [s for s in pred.get(r["id"], []) if s[0] in TYPES]
        for t in TYPES:
            g_t = [g for g in gold if g[0] == t]
            p_t = [s for s in p if s[0] == t]
            per[t]["gold"] += len(g_t)
            per[t]["pred"] += len(p_t)
            per[t]["tp_r"] += sum(any(s[1] < g[2] and g[1] < s[2] for s in p_t) for g in g_t)
            per[t]["tp_p"] += sum(any(s[1] < g[2] and g[1] < s[2] for g in g_t) for s in p_t)
    def prf(c):
        pr = c["tp_p"] / c["pred"] if c["pred"] else 0.0
        rc = c["tp_r"] / c["gold"] if c["gold"] else 0.0
        f2 = 5 * pr * rc / (4 * pr + rc) if pr + rc else 0.0
        return {"precision": pr, "recall": rc, "f2": f2, "gold": c["gold"], "pred": c["pred"]}
    out = {t: prf(per[t]) for t in TYPES}
    out["typed_overlap"] = prf(sum(per.values(), collections.Counter()))
    return out


res = {"bench": "pii_ner", "date": datetime.date.today().isoformat(), "n": len(rows),
       "gold_spans": sum(len(r["spans"]) for r in rows)}
hs, failed, rps_min_time, rps_median = hone_spans()
res["hone"] = {"scores": score(hs), "alignment_failures": failed, "rows_per_s_best": rps_min_time,
               "rows_per_s_median": rps_median,
               "note": "pii_types = all twelve types (LOCATION and ORG are opt-in by default)"}
if peer_py and os.path.exists(peer_py):
    p = subprocess.run([peer_py, os.path.join(os.path.dirname(__file__), "presidio_peer.py"), eval_path],
                       capture_output=True, text=True)
    if p.returncode == 0:
        peer = json.loads(p.stdout)
        res["presidio"] = {"scores": score(peer["spans"]), "rows_per_s": peer["rows_per_s"], "model": peer["model"]}
    else:
        res["presidio"] = {"error": p.stderr[-2000:]}
json.dump(res, open(out_json, "w"), indent=2)
for side in ("hone", "presidio"):
    if side in res and "scores" in res[side]:
        s = res[side]["scores"]
        print(side, " ".join(f"{t}: P {s[t]['precision']:.3f} R {s[t]['recall']:.3f} F2 {s[t]['f2']:.3f};"
                             for t in TYPES + ["typed_overlap"]))
print(json.dumps({k: v for k, v in res["hone"].items() if k != "scores"}))
if "presidio" in res:
    print(json.dumps({k: v for k, v in res["presidio"].items() if k != "scores"})[:500])
