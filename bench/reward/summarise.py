"""Fold bench/reward's outputs (BENCH_WORK) into bench/results/reward.json and RESULTS.md rows.

Reads what the stages wrote, each when present: runs.json (`hone --json runs` of the house-rules
project), run.json (`hone --json run`, for the graders' test figures), compare-*.json (`hone --json
compare`), grade-dev-grpo.json, review-pairs.json, run-dpo.json. Sections of reward.json whose inputs
are absent are kept as they were (stage 1's `validate` and `cosine_threshold`, stage 2's `timing`).
Usage: summarise.py BENCH_WORK reward.json RESULTS.md"""
import datetime
import json
import os
import statistics
import subprocess
import sys

work, out_path, md_path = sys.argv[1:4]
GRADER = "house_rules"


def load(name):
    p = os.path.join(work, name)
    return json.load(open(p)) if os.path.exists(p) and os.path.getsize(p) > 0 else None


def est(e):
    return f"{e['estimate']:.4f} [{e['lo']:.4f}, {e['hi']:.4f}]"


def paired(p):
    return f"{p['delta']:+.4f} [{p['lo']:+.4f}, {p['hi']:+.4f}] (p {p['p_value']:.4f})"


today = datetime.date.today().isoformat()
commit = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(md_path)), "rev-parse", "--short", "HEAD"],
                        capture_output=True, text=True).stdout.strip() or None
result = json.load(open(out_path)) if os.path.exists(out_path) else {}
result.update({"bench": "reward", "date": today, "commit": commit})
rows = []


def row(figure, hone, peer="–", ratio="–", notes=""):
    rows.append(f"| {today} | reward | {figure} | {hone} | {peer} | {ratio} | {notes} |")


runs = load("runs.json") or []
run = load("run.json")
latest = {}
for r in runs:
    if r["model"] not in latest or r["seq"] > latest[r["model"]]["seq"]:
        latest[r["model"]] = r

# Stage 3: pass rate and relevance of base, LoRA SFT and SFT + GRPO on the frozen test set.
if run:
    models = {}
    for r in run["runs"]:
        g = (r.get("graders") or {}).get(GRADER)
        gen = (r.get("generation") or {}).get("test") or {}
        if not g:
            continue
        models[r["model"]] = {
            "seq": r["seq"], "run": r["run"], "n": g.get("n"),
            "pass_rate": g["pass_rate"], "mean_reward": g["mean"],
            "rouge_l": gen.get("rouge_l"), "mean_new_tokens": gen.get("mean_new_tokens"),
            "stopped_share": gen.get("stopped_share"),
        }
    quality = {"models": models, "comparisons": {}}
    for a, b in [("base", "lora"), ("lora", "grpo"), ("base", "grpo")]:
        c = load(f"compare-{a}-{b}.json")
        if not c:
            continue
        g = next((x for x in c.get("graders", []) if x["grader"] == GRADER), None)
        if not g:
            continue
        quality["comparisons"][f"{a}->{b}"] = {
            "n_shared": c["n_shared"], "pass_a": g["pass_a"], "pass_b": g["pass_b"], "pass": g["pass"],
            "mean_a": g["mean_a"], "mean_b": g["mean_b"], "mean": g["mean"],
            "sub": {s["name"]: s for s in g.get("sub", [])}, "rouge_l": c["rouge_l"],
        }
    grpo = latest.get("grpo")
    rep = grpo and ((grpo["record"]["train"]["report"] or {}).get("grpo"))
    if rep:
        steps = rep["steps"]
        secs = [s["generate_seconds"] + s["reward_seconds"] + s["train_seconds"] for s in steps]
        quality["grpo"] = {
            "steps": len(steps),
            "step_seconds": {"min": min(secs), "median": statistics.median(secs), "total": sum(secs)},
            "generate_seconds_median": statistics.median(s["generate_seconds"] for s in steps),
            "train_seconds_median": statistics.median(s["train_seconds"] for s in steps),
            "reward_mean": [round(s["reward_mean"], 4) for s in steps],
            "frac_reward_zero_std": [round(s["frac_reward_zero_std"], 4) for s in steps],
            "clipped_ratio": [round(s["clipped_ratio"], 4) for s in steps],
            "completion_length": [round(s["completion_length"], 1) for s in steps],
            "dev_mean_reward": grpo["record"]["train"]["report"].get("dev_by_epoch"),
            "kept": grpo["record"]["train"]["report"].get("kept"),
            "stopped_by": grpo["record"]["train"]["report"].get("stopped_by") or rep.get("stopped_by"),
            "warnings": rep.get("warnings"), "wall_seconds": grpo["record"]["train"]["wall_seconds"],
        }
    lora = latest.get("lora")
    if lora:
        quality["lora_train_wall_seconds"] = lora["record"]["train"]["wall_seconds"]
    dev = load("grade-dev-grpo.json")
    if dev:
        quality["grade_dev_grpo"] = dev
    result["quality"] = quality
    for m, v in models.items():
        row(f"house rules, {m}: {GRADER} pass rate on the frozen test set (n {v['n']}); mean reward",
            f"{est(v['pass_rate'])}; {est(v['mean_reward'])}", notes=f"`hone run`, run #{v['seq']}")
    for k, v in quality["comparisons"].items():
        topic = v["sub"].get("on_topic")
        row(f"house rules, {k}: pass rate A → B, paired Δ; relevance (on_topic cosine) A → B, paired Δ",
            f"{v['pass_a']:.4f} → {v['pass_b']:.4f}, Δ {paired(v['pass'])}; "
            + (f"{topic['mean_a']:.4f} → {topic['mean_b']:.4f}, Δ {paired(topic['mean'])}" if topic else "–"),
            notes=f"`hone compare`, {v['n_shared']} shared test answers")
    if "grpo" in quality:
        q = quality["grpo"]
        r = q["reward_mean"]
        tenth = max(1, len(r) // 10)
        row(f"house rules GRPO ({q['steps']} steps, 4 prompts x 4): reward first / last tenth; zero-std groups; clipped",
            f"{statistics.mean(r[:tenth]):.3f} → {statistics.mean(r[-tenth:]):.3f}; "
            f"{statistics.mean(q['frac_reward_zero_std']):.3f}; "
            f"{statistics.mean(q['clipped_ratio'][:tenth]):.3f} → {statistics.mean(q['clipped_ratio'][-tenth:]):.3f}",
            notes=f"step {q['step_seconds']['median']:.1f} s median (min {q['step_seconds']['min']:.1f}), 2 threads; dev mean reward "
                  + " → ".join(f"{d['score']:.4f} (step {d['step']})" for d in q["dev_mean_reward"] or [])
                  + (f"; kept step {q['kept']['step']}" if q["kept"] else ""))

# Stage 4: DPO on pairs from reviews of the SFT model's answers.
pairs = load("review-pairs.json")
cmp_dpo = load("compare-lora-dpo.json")
dpo = latest.get("dpo")
if dpo or pairs or cmp_dpo:
    d = {"pairs": pairs}
    if dpo:
        d["train"] = dpo["record"]["train"]["report"]
        d["wall_seconds"] = dpo["record"]["train"]["wall_seconds"]
        rep = d["train"].get("dpo") or {}
        b, a = rep.get("before"), rep.get("after")
        if b and a:
            row("house rules DPO from reviews: held-out preference accuracy, reference → kept weights",
                f"{b['accuracy']:.4f} → {a['accuracy']:.4f} (n {a['n']}; loss {b['loss']:.4f} → {a['loss']:.4f})",
                notes=f"{rep.get('pairs_train')} training pairs, {rep.get('pairs_heldout')} held out; "
                      f"{d['wall_seconds']:.0f} s")
    if cmp_dpo:
        g = next((x for x in cmp_dpo.get("graders", []) if x["grader"] == GRADER), None)
        d["compare_lora_dpo"] = {"pass": g and g["pass"], "pass_a": g and g["pass_a"], "pass_b": g and g["pass_b"],
                                 "sub": g and {s["name"]: s for s in g.get("sub", [])}}
        if g:
            row("house rules DPO from reviews: pass rate SFT → DPO, paired Δ",
                f"{g['pass_a']:.4f} → {g['pass_b']:.4f}, Δ {paired(g['pass'])}", notes="`hone compare lora dpo`")
    result["dpo"] = d

# Stage 5: a student pre-trained by hone, distilled from the GRPO model.
cmp_st = load("compare-grpo-student.json")
student = latest.get("student")
if student or cmp_st:
    result["distill"] = {"compare_grpo_student": cmp_st,
                         "train": student and student["record"]["train"]}

json.dump(result, open(out_path, "w"), indent=1)
if rows:
    open(md_path, "a").write("\n".join(rows) + "\n")
print(json.dumps({k: result[k] for k in ("quality", "dpo", "distill") if k in result}, indent=1)[:4000])
