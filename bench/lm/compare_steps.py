"""bench/lm stages 5 and 6, step time: hone's training step (examples/lm_train_step) against the peer's
(step_peer.py), same shapes, rounds interleaved; min and median over rounds of each run's steps after the
first, peak RSS, per thread count. Stage 5 (default): the LoRA step, files step-{hone,peer}-tT-rR.json,
results key `finetune_step`. Stage 6: `pretrain-step pretrain_step "pre-training step ..."`.

    python compare_steps.py BENCH_WORK RESULTS.json RESULTS.md [PREFIX KEY LABEL]
"""
import datetime
import json
import pathlib
import statistics
import sys

work, results_path, md_path = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
prefix, key, label = (sys.argv[4:7] if len(sys.argv) > 6
                      else ("step", "finetune_step", "LoRA training step (q/k/v/o), 8 × 256 synthetic"))
summary = {}
for threads in (1, 2):
    side = {}
    for name in ("hone", "peer"):
        runs = [json.loads(p.read_text()) for p in sorted(work.glob(f"{prefix}-{name}-t{threads}-r*.json"))]
        steps = [s for r in runs for s in r["step_seconds"][1:]]
        if not steps:
            continue
        side[name] = {"min": min(steps), "median": statistics.median(steps),
                      "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "rounds": len(runs)}
    if len(side) == 2:
        side["ratio_hone_over_peer"] = {k: side["hone"][k] / side["peer"][k] for k in ("min", "median")}
        side["rss_ratio_hone_over_peer"] = side["hone"]["peak_rss_mib"] / side["peer"]["peak_rss_mib"]
    summary[f"{threads}t"] = side
res = json.load(open(results_path)) if pathlib.Path(results_path).exists() else {}
res[key] = {"at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                        "batch": 8, "length": 256, "summary": summary}
json.dump(res, open(results_path, "w"), indent=1)
print(json.dumps(summary, indent=1))
day = res[key]["at"][:10]
with open(md_path, "a") as f:
    for t, s in summary.items():
        if "ratio_hone_over_peer" in s:
            f.write(f"| {day} | lm | {label}, {t} (min / median of the steps after the first) | "
                    f"{s['hone']['min']:.2f} / {s['hone']['median']:.2f} s | {s['peer']['min']:.2f} / {s['peer']['median']:.2f} s | "
                    f"{s['ratio_hone_over_peer']['min']:.3f}x / {s['ratio_hone_over_peer']['median']:.3f}x | "
                    f"peak RSS {s['hone']['peak_rss_mib']} vs {s['peer']['peak_rss_mib']} MiB |\n")
