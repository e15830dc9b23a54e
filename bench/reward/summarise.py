"""Fold bench/reward's outputs (BENCH_WORK) into bench/results/reward.json and RESULTS.md rows.

Reads what the stages wrote, each when present: runs.json (`hone --json runs` of the house-rules
project), run.json (`hone --json run`, for the graders' test figures), compare-*.json (`hone --json
compare`), grade-dev-grpo.json, review-pairs.json, run-dpo.json, run-student.json, run-select.json (a `hone
run` after `[task] select_by` was added to a project that had run), timing-runs.json and
timing-trl.json (stage 2). Sections of reward.json whose inputs
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
run_st = load("run-student.json")
if student or cmp_st:
    d = {"compare_grpo_student": cmp_st, "train": student and student["record"]["train"]}
    rep = student and (student["record"]["train"]["report"] or {}).get("distill")
    if rep:
        d["retention_rouge_l"], d["speedup_tokens_per_s"] = rep.get("retention"), rep.get("speedup")
        gen = student["record"].get("generation") or {}
        d["student_tokens_per_s"] = gen.get("tokens_per_s")
        teacher = latest.get(rep.get("teacher"))
        d["teacher_tokens_per_s"] = teacher and (teacher["record"].get("generation") or {}).get("tokens_per_s")
        row(f"distillation: student (hone pretrain, sequence-level on `{rep.get('teacher')}`'s answers) retention of test ROUGE-L; speed-up in generated tokens/s",
            f"{rep['retention']:.4f}; {rep['speedup']:.2f}x" if rep.get("retention") is not None and rep.get("speedup") is not None else "–",
            notes=f"student {d['student_tokens_per_s'] or 0:.1f} tok/s vs teacher {d['teacher_tokens_per_s'] or 0:.1f} tok/s; "
                  f"train {student['record']['train']['wall_seconds']:.0f} s"
                  + (f"; teacher answered the training prompts in {rep['teacher_answer_seconds']:.0f} s" if rep.get("teacher_answer_seconds") else ""))
    if run_st:
        gr = {r["model"]: (r.get("graders") or {}).get(GRADER) for r in run_st["runs"]}
        if gr.get("student") and gr.get("grpo"):
            d["pass_rate"] = {"teacher": gr["grpo"]["pass_rate"], "student": gr["student"]["pass_rate"]}
            row("distillation: house-rules pass rate, teacher (GRPO) vs student, frozen test set",
                f"{est(gr['grpo']['pass_rate'])} vs {est(gr['student']['pass_rate'])}", notes="`hone run`")
    if cmp_st:
        g = next((x for x in cmp_st.get("graders", []) if x["grader"] == GRADER), None)
        if g:
            row("distillation: pass rate teacher → student, paired Δ; ROUGE-L paired Δ",
                f"{g['pass_a']:.4f} → {g['pass_b']:.4f}, Δ {paired(g['pass'])}; Δ {paired(cmp_st['rouge_l'])}",
                notes="`hone compare grpo student`")
    result["distill"] = d

# Which model `hone run` chose, by which rule (the latest run output that says).
for name in ("run-select.json", "run-student.json", "run-dpo.json", "run.json"):
    r = load(name)
    if r and r.get("choice"):
        c = r["choice"]
        models = [x["model"] for x in r["runs"]]
        result["choice"] = {"rule": c["rule"], "metric": c["metric"], "chosen": models[c["chosen"]],
                            "dev": dict(zip(models, c["dev"]))}
        row(f"house rules: the model `hone run` chose ({c['metric']})", models[c["chosen"]],
            notes="; ".join(f"{m} {v:.4f}" if v is not None else f"{m} –" for m, v in zip(models, c["dev"])))
        break

# Stage 2: time per GRPO step, hone vs TRL's GRPOTrainer, the same recipe from the base model.
t_runs, t_trl = load("timing-runs.json"), load("timing-trl.json")
g = t_runs and next((r for r in reversed(t_runs) if r["model"] == "grpo"), None)
rep = g and (g["record"]["train"]["report"] or {}).get("grpo")
if rep and t_trl:
    steps = rep["steps"]
    hs = [round(s["generate_seconds"] + s["reward_seconds"] + s["train_seconds"], 2) for s in steps]
    ts = [round(x, 2) for x in t_trl["step_seconds"]]
    side = lambda secs, reward, clipped: {"step_seconds": secs, "min": min(secs), "median": statistics.median(secs),
                                          "reward": reward, "clipped_ratio": clipped}
    timing = {"steps": len(hs), "threads": 2,
              "recipe": "SmolLM2-135M-Instruct base + fresh LoRA r16/a32 q,k,v,o; 4 prompts x 4 completions; 96 tokens; T=1; lr 1e-5; dapo; beta 0; house-rules reward",
              "rounds": "one each, back to back",
              "hone": side(hs, [round(s["reward_mean"], 4) for s in steps], [s["clipped_ratio"] for s in steps]),
              "trl": side(ts, t_trl["reward"], t_trl["clipped_ratio"])}
    timing["trl"]["peak_rss_mib"] = t_trl.get("peak_rss_mib")
    timing["ratio_hone_over_trl"] = {k: round(timing["hone"][k] / timing["trl"][k], 3) for k in ("median", "min")}
    result["timing"] = timing
    q = max(1, len(hs) // 4)
    mean = lambda xs: sum(xs) / len(xs)
    row(f"GRPO time per step ({len(hs)} steps, 4 prompts x 4, 96 tokens, 2 threads), median (min)",
        f"{timing['hone']['median']:.1f} s ({timing['hone']['min']:.1f})",
        f"{timing['trl']['median']:.1f} s ({timing['trl']['min']:.1f})",
        f"{timing['ratio_hone_over_trl']['median']:.3f}x ({timing['ratio_hone_over_trl']['min']:.3f}x)",
        notes=f"TRL GRPOTrainer on the CPU; reward mean first → last quarter: hone {mean(timing['hone']['reward'][:q]):.3f} → "
              f"{mean(timing['hone']['reward'][-q:]):.3f}, TRL {mean(timing['trl']['reward'][:q]):.3f} → {mean(timing['trl']['reward'][-q:]):.3f}")

json.dump(result, open(out_path, "w"), indent=1)
if rows:
    open(md_path, "a").write("\n".join(rows) + "\n")
print(json.dumps({k: result[k] for k in ("quality", "dpo", "distill", "choice", "timing") if k in result}, indent=1)[:4000])
