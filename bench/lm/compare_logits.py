"""bench/lm stage 2: hone's next-token logits and greedy continuations against transformers' on the same
GGUF weights and token ids. Goals (issue 13): logits within 1e-3; greedy generations identical on 50
prompts x 64 tokens except where the two best logits are within 1e-3 at the step where they part."""
import datetime, json, os, subprocess, sys

work, out_json, results_md = sys.argv[1:4]
hone = [json.loads(l) for l in open(f"{work}/logits-hone.jsonl")]
peer = {json.loads(l)["id"]: json.loads(l) for l in open(f"{work}/logits-transformers.jsonl")}
max_diff, same, near_tie, other = [], 0, 0, []
for r in hone:
    q = peer[r["id"]]
    max_diff.append(max(abs(a - b) for a, b in zip(r["logits"], q["logits"])))
    a, b = r["greedy"], q["greedy"]
    if a == b:
        same += 1
        continue
    k = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
    gap = min(r["gaps"][k] if k < len(r["gaps"]) else float("inf"),
              q["gaps"][k] if k < len(q["gaps"]) else float("inf"))
    if gap < 1e-3:
        near_tie += 1
    else:
        other.append({"id": r["id"], "step": k, "gap": gap})
max_diff.sort()
res = json.load(open(out_json)) if os.path.exists(out_json) else {}
res["logits"] = {"prompts": len(hone), "max_abs_logit_diff": max_diff[-1],
                 "median_of_max_abs_logit_diff": max_diff[len(max_diff) // 2],
                 "greedy_identical": same, "greedy_parted_at_near_tie": near_tie, "greedy_other": other,
                 "tokens_generated_hone": sum(len(r["greedy"]) for r in hone)}
res["date"] = datetime.date.today().isoformat()
json.dump(res, open(out_json, "w"), indent=2)
commit = subprocess.run(["git", "-C", os.path.dirname(os.path.dirname(results_md)), "rev-parse", "--short", "HEAD"],
                        capture_output=True, text=True).stdout.strip()
with open(results_md, "a") as fh:
    fh.write(f"| {res['date']} | lm | SmolLM2-135M-Instruct next-token logits and greedy 64 tokens vs transformers (same GGUF dequantized to f32, same token ids), {len(hone)} prompts | "
             f"max abs logit difference {max_diff[-1]:.1e} (median per prompt {max_diff[len(max_diff) // 2]:.1e}); greedy identical {same}/{len(hone)}, "
             f"{near_tie} parted at a near-tie, {len(other)} otherwise | transformers AutoModelForCausalLM from GGUF, f32 | – | "
             f"goal: logits within 1e-3; commit {commit} |\n")
print(json.dumps(res["logits"]))
