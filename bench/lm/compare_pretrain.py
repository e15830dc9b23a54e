"""bench/lm stage 6: pre-training side by side. Reads hone's run (`hone runs --json`: per-step losses,
the training loop's seconds, the cost estimate made after the first steps, the FLOPs estimate) and the
peer's log (pretrain_peer.py), which saw the same initial weights and the same batches in the same order,
so step i of one is step i of the other at equal tokens.

Reports the two loss curves at every tenth of the tokens (mean over a window of steps around it) with the
relative gap, the largest gap over all windows after the first tenth, the time of the training loop on
both sides, hone's estimate against its measured time, and peak RSS of each whole process.

    python compare_pretrain.py PROJECT_DIR RESULTS.json RESULTS.md
PROJECT_DIR holds runs.json, peer.json, recipe.json, hone-time.txt and peer-log.txt (GNU time -v).
"""
import datetime
import json
import pathlib
import re
import sys

d, results_path, md_path = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
run = [r for r in json.load(open(d / "runs.json")) if r["record"]["train"].get("report", {}).get("method") == "pretrain"][0]
rep = run["record"]["train"]["report"]
peer = json.load(open(d / "peer.json"))
hone_loss = rep["losses"]
peer_steps = peer["steps"]
peer_loss = [s["loss"] for s in peer_steps]
n = min(len(hone_loss), len(peer_loss))
assert n > 20, "too few steps to compare"
tokens = [s["tokens"] for s in peer_steps[:n]]
cum = [sum(tokens[: i + 1]) for i in range(n)]
window = max(n // 20, 1)


def mean(xs):
    return sum(xs) / len(xs)


points = []
for tenth in range(1, 11):
    i = min(n - 1, max(0, round(n * tenth / 10) - 1))
    lo = max(0, i - window + 1)
    h, p = mean(hone_loss[lo:i + 1]), mean(peer_loss[lo:i + 1])
    points.append({"tokens": cum[i], "step": i + 1, "hone": h, "peer": p, "rel_gap": (h - p) / p})
gaps = []
for i in range(n // 10, n, window):
    h, p = mean(hone_loss[i:i + window]), mean(peer_loss[i:i + window])
    gaps.append(abs(h - p) / p)
first_steps_max_abs = max(abs(a - b) for a, b in zip(hone_loss[:10], peer_loss[:10]))


def peak_rss_mib(path):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", (d / path).read_text())
    return int(m.group(1)) // 1024 if m else None


peer_seconds = sum(s["seconds"] for s in peer_steps[:n])
hone_seconds = rep["train_loop_seconds"]
summary = {
    "steps": n, "tokens": cum[-1], "params": rep["trainable_params"], "window_steps": window,
    "curve": points, "max_rel_gap_after_first_tenth": max(gaps),
    "first_10_steps_max_abs_diff": first_steps_max_abs,
    "final_window": {"hone": points[-1]["hone"], "peer": points[-1]["peer"]},
    "train_seconds": {"hone": hone_seconds, "peer": peer_seconds, "ratio_hone_over_peer": hone_seconds / peer_seconds},
    "hone_estimate": {"estimated_seconds": rep["estimated_seconds"], "measured_seconds": hone_seconds,
                      "estimate_over_measured": rep["estimated_seconds"] / hone_seconds,
                      "flops": rep["flops"], "achieved_gflops": rep["flops"] / hone_seconds / 1e9},
    "peak_rss_mib": {"hone_whole_run": peak_rss_mib("hone-time.txt"), "peer": peak_rss_mib("peer-log.txt")},
    "threads": peer["threads"], "recipe": json.load(open(d / "recipe.json")),
}
res = json.load(open(results_path)) if pathlib.Path(results_path).exists() else {}
res["pretrain"] = {"at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "summary": summary}
json.dump(res, open(results_path, "w"), indent=1)
print(json.dumps(summary, indent=1))
day = res["pretrain"]["at"][:10]
with open(md_path, "a") as f:
    f.write(f"| {day} | lm | pre-training {summary['params'] / 1e6:.2f}M params from scratch, {n} steps, "
            f"{cum[-1]:,} tokens, {peer['threads']} threads: loss at the last tenth (hone / peer) | "
            f"{points[-1]['hone']:.4f} | {points[-1]['peer']:.4f} | max gap {max(gaps) * 100:.2f}% after the first tenth | "
            f"training loop {hone_seconds:.0f} s vs {peer_seconds:.0f} s ({hone_seconds / peer_seconds:.3f}x); "
            f"hone's estimate {rep['estimated_seconds']:.0f} s for {hone_seconds:.0f} s measured |\n")
