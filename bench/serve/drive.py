"""Drive bench/serve: wrk against hone serve (:18080) and mlflow models serve (:18081), interleaved,
at 1, 16 and 64 connections with 1 and 32 texts per request; requests/s and p50/p99 latency, min and
median over rounds (requests/s counts successful answers only: hone answers 503 while its log
writer is behind), and the ratio hone / MLflow. Writes WORK/serve.json and prints a table.

usage: drive.py WORK TOKEN ROUNDS SECONDS TEST_JSONL
"""
import json
import os
import re
import statistics
import subprocess
import sys
import urllib.request

work, token, rounds, secs, test = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
texts = [json.loads(l)["text"] for l in open(test)][:32]
servers = {
    "hone": ("http://127.0.0.1:18080/v1/predict", lambda ts: {"texts": ts}, {"Authorization": f"Bearer {token}"}),
    "mlflow": ("http://127.0.0.1:18081/invocations", lambda ts: {"dataframe_split": {"columns": ["text"], "data": [[t] for t in ts]}}, {}),
}


def check(name, n):
    url, body, headers = servers[name]
    req = urllib.request.Request(url, data=json.dumps(body(texts[:n])).encode(), headers={"Content-Type": "application/json", **headers})
    out = json.loads(urllib.request.urlopen(req, timeout=30).read())
    got = len(out["predictions"])
    assert got == n, (name, n, out)


def script(name, n):
    url, body, headers = servers[name]
    path = os.path.join(work, f"{name}-{n}.lua")
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body(texts[:n])))}", 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    open(path, "w").write("\n".join(lines) + "\n")
    return url, path


def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    x = float(m.group(1))
    return {"us": x / 1000, "ms": x, "s": x * 1000}[m.group(2)]


def wrk(name, n, conns):
    url, path = script(name, n)
    out = subprocess.run(["wrk", "-t", str(min(2, conns)), "-c", str(conns), "-d", f"{secs}s", "--latency", "-s", path, url],
                         capture_output=True, text=True, check=True).stdout
    # Only successful answers count: hone answers 503 (log_behind) while its log writer is behind.
    rps_all = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    rps = rps_all * (1 - (int(bad.group(1)) if bad else 0) / max(total, 1))
    return {"rps": rps, "rps_all": rps_all, "p50_ms": p50, "p99_ms": p99, "non_2xx": int(bad.group(1)) if bad else 0, "socket_errors": errors.group(1) if errors else None}


for name in servers:
    for n in (1, 32):
        check(name, n)
results = {}
for r in range(rounds):
    for n in (1, 32):
        for conns in (1, 16, 64):
            for name in servers:
                key = f"{n}text-c{conns}"
                results.setdefault(key, {}).setdefault(name, []).append(wrk(name, n, conns))
                print(r, key, name, results[key][name][-1], flush=True)

summary = {}
print(f"\n{'setting':<14}{'hone rps (min/med)':>22}{'mlflow rps (min/med)':>24}{'ratio med':>11}{'hone p99 med':>14}{'mlflow p99 med':>16}")
for key, by in results.items():
    row = {}
    for name, runs in by.items():
        rps = [x["rps"] for x in runs]
        p99 = [x["p99_ms"] for x in runs]
        p50 = [x["p50_ms"] for x in runs]
        row[name] = {"rps_min": min(rps), "rps_median": statistics.median(rps), "p50_ms_median": statistics.median(p50),
                     "p99_ms_median": statistics.median(p99), "p99_ms_min": min(p99), "non_2xx": sum(x["non_2xx"] for x in runs)}
    row["ratio_rps_median"] = row["hone"]["rps_median"] / row["mlflow"]["rps_median"]
    row["ratio_rps_min"] = row["hone"]["rps_min"] / row["mlflow"]["rps_min"]
    summary[key] = row
    print(f"{key:<14}{row['hone']['rps_min']:>10.0f}/{row['hone']['rps_median']:<11.0f}{row['mlflow']['rps_min']:>12.0f}/{row['mlflow']['rps_median']:<11.0f}"
          f"{row['ratio_rps_median']:>10.1f}x{row['hone']['p99_ms_median']:>12.2f}ms{row['mlflow']['p99_ms_median']:>14.2f}ms")
json.dump({"rounds": rounds, "seconds": secs, "runs": results, "summary": summary,
           "peer": json.load(open(os.path.join(work, "peer.json")))}, open(os.path.join(work, "serve.json"), "w"), indent=2)
