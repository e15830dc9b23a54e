#!/usr/bin/env bash
# bench/serve: `hone serve` with the BANKING77 `ngram` model against `mlflow models serve` of a
# scikit-learn TF-IDF + LinearSVC pipeline trained on the same texts, both on loopback, both driven by
# wrk (Debian's package) at 1, 16 and 64 connections, with one text and with 32 texts per request,
# interleaved, for SERVE_ROUNDS rounds (min and median). hone runs with `--rate-limit 0`: the default
# per-token limit (1,000 requests/s) is a protection a load test would only measure. Then drift
# (drift.py): `hone drift` on windows of held-back in-distribution traffic (false alarms) and on
# shifted traffic (detection delay). SERVE_LOAD=0 runs the drift part alone (no MLflow, no wrk) and
# replaces only the `drift` entry of bench/results/serve.json.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
hone=${HONE_BIN:-$root/target/release/hone}
shared=${HONE_SHARED:-$root/../shared}
work=${BENCH_WORK:-$root/bench/work/serve}
venv=${SERVE_VENV:-$root/bench/.venv-serve}
rounds=${SERVE_ROUNDS:-3}
secs=${SERVE_SECONDS:-10}
load=${SERVE_LOAD:-1}
if [ "$load" = 1 ]; then
  command -v wrk > /dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
  [ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q mlflow scikit-learn pandas; }
fi
rm -rf "$work" && mkdir -p "$work/b77/data"
cp "$shared/datasets/banking77/train.jsonl" "$work/b77/data/"
# Half of the official test set is the project's test set; the other half is held back as the
# in-distribution traffic of the drift part (never trained on, never the reference).
awk 'NR % 2 == 1' "$shared/datasets/banking77/test.jsonl" > "$work/b77/data/test.jsonl"
awk 'NR % 2 == 0' "$shared/datasets/banking77/test.jsonl" > "$work/heldback.jsonl"
cat > "$work/b77/hone.toml" <<'TOML'
[task]
name = "banking77"
kind = "classify"

[policy]
contamination = "drop_train"

[[source]]
name = "train"
path = "data/train.jsonl"
license = "CC BY 4.0"

[[source]]
name = "test"
path = "data/test.jsonl"
role = "test"
license = "CC BY 4.0"

[[model]]
name = "ngram"
kind = "ngram"
TOML
"$hone" -C "$work/b77" --json run > "$work/run.json" || [ $? -eq 3 ]
seq=$("$hone" -C "$work/b77" --json runs | python3 -c 'import json,sys; print([r for r in json.load(sys.stdin) if r["chosen"]][0]["seq"])')
"$hone" -C "$work/b77" approve "$seq" --reason "bench/serve" > "$work/approve.txt"
token=$("$hone" -C "$work/b77" --json token create --name bench --role predict | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
"$hone" -C "$work/b77" serve --addr 127.0.0.1:18080 --rate-limit 0 2> "$work/hone.err" &
hone_pid=$!
ml_pid=
trap 'kill $hone_pid $ml_pid 2>/dev/null || true; [ -z "$ml_pid" ] || pkill -P $ml_pid 2>/dev/null || true' EXIT
if [ "$load" = 1 ]; then
  "$venv/bin/python" "$root/bench/serve/mlflow_model.py" "$work/b77/data/train.jsonl" "$work/b77/data/test.jsonl" "$work/mlflow-model" > "$work/peer.json"
  PATH="$venv/bin:$PATH" "$venv/bin/mlflow" models serve -m "$work/mlflow-model" -h 127.0.0.1 -p 18081 --env-manager local -w 2 > "$work/mlflow.log" 2>&1 &
  ml_pid=$!
fi
for _ in $(seq 1 600); do
  curl -sf 127.0.0.1:18080/healthz > /dev/null && { [ "$load" != 1 ] || curl -sf 127.0.0.1:18081/ping > /dev/null; } && break
  sleep 0.2
done
[ "$load" != 1 ] || python3 "$root/bench/serve/drive.py" "$work" "$token" "$rounds" "$secs" "$work/b77/data/test.jsonl"
python3 "$root/bench/serve/drift.py" "$hone" "$work" "$token" "$shared/datasets"
# The drift part's figures go into bench/results/serve.json beside the load part's.
python3 - "$work" "$root/bench/results/serve.json" "$load" <<'PY'
import datetime, json, os, sys
work, out, load = sys.argv[1:4]
results = json.load(open(out)) if os.path.exists(out) else {}
if load == "1":
    s = json.load(open(os.path.join(work, "serve.json")))
    results.update({"date": datetime.date.today().isoformat(), "load": s["summary"], "peer": s["peer"],
                    "rounds": s["rounds"], "seconds": s["seconds"]})
    # An older layout kept the load figures under these keys; "load" replaces them.
    for stale in ("summary", "runs"):
        results.pop(stale, None)
results["drift"] = json.load(open(os.path.join(work, "drift.json")))
results["drift"]["date"] = datetime.date.today().isoformat()
json.dump(results, open(out, "w"), indent=2)
PY
