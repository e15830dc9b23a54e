"""bench/lm stage 3: greedy generation tokens/s, hone against transformers on the same GGUF weights and
prompt token ids, batch 1 and 8, 1 and 2 threads, rounds interleaved. Goal (issue 13): hone >= 1.5x.
Reads speed-{side}-b{batch}-t{threads}-r{round}.json from the work folder."""
import datetime, glob, json, os, re, statistics, subprocess, sys

work, out_json, results_md = sys.argv[1:4]
runs = {}
for path in glob.glob(f"{work}/speed-*.json"):
    m = re.search(r"speed-(hone|transformers)-b(\d+)-t(\d+)-r(\d+)\.json$", path)
    if m:
        runs.setdefault((int(m[2]), int(m[3])), {}).setdefault(m[1], []).append(json.load(open(path)))
summary = {}
rows = []
for (batch, threads), sides in sorted(runs.items()):
    h = [r["tokens_per_s"] for r in sides.get("hone", [])]
    t = [r["tokens_per_s"] for r in sides.get("transformers", [])]
    if not h or not t:
        continue
    same = sum(a["tokens"] == b["tokens"] for a, b in zip(sides["hone"][0]["greedy"], sides["transformers"][0]["greedy"]))
    key = f"b{batch}-t{threads}"
    summary[key] = {"hone_tokens_per_s": {"min": min(h), "median": statistics.median(h)},
                    "transformers_tokens_per_s": {"min": min(t), "median": statistics.median(t)},
                    "ratio_median": statistics.median(h) / statistics.median(t),
                    "rounds": len(h), "prompts": sides["hone"][0]["prompts"],
                    "greedy_identical": same}
    rows.append(f"batch {batch}, {threads} thread(s): hone {statistics.median(h):.1f} vs {statistics.median(t):.1f} tokens/s (median of {len(h)}; "
                f"{summary[key]['ratio_median']:.2f}x; greedy identical {same}/{sides['hone'][0]['prompts']})")
res = json.load(open(out_json)) if os.path.exists(out_json) else {}
res["speed"] = summary
res["date"] = datetime.date.today().isoformat()
json.dump(res, open(out_json, "w"), indent=2)
commit = subprocess.run(["git", "-C", os.path.dirname(os.path.dirname(results_md)), "rev-parse", "--short", "HEAD"],
                        capture_output=True, text=True).stdout.strip()
with open(results_md, "a") as fh:
    fh.write(f"| {res['date']} | lm | SmolLM2-135M-Instruct greedy generation speed (up to 64 new tokens, same GGUF f32 and token ids) | "
             + "; ".join(rows) + f" | transformers generate(), f32, torch.set_num_threads | – | goal: >= 1.5x; commit {commit} |\n")
print(json.dumps(summary, indent=1))
