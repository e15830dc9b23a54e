#!/usr/bin/env bash
# The official `openai` Python package (from PyPI) against `hone serve` on the demo's generate project:
# whole and streamed chat answers, each compared byte for byte with `hone predict`, and a wrong token
# refused. Needs a built hone (HONE, default target/release/hone) and python3 with pip.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
hone=${HONE:-$root/target/release/hone}
work=${WORK:-$root/bench/work/serve-openai}
venv=$root/bench/.venv-openai
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q openai; }
rm -rf "$work" && mkdir -p "$work"
"$hone" demo --dir "$work/demo" > "$work/demo.log"
gen=$work/demo/replies
token=$("$hone" -C "$gen" --json token create --name client --role predict | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
prompt="my parcel is late, order 5521"
printf '{"messages": [{"role": "user", "content": "%s"}]}\n' "$prompt" > "$work/in.jsonl"
predicted=$("$hone" -C "$gen" predict "$work/in.jsonl" 2>/dev/null | head -1)
"$hone" -C "$gen" --json serve --addr 127.0.0.1:0 --allow-unapproved > "$work/serve.out" 2> "$work/serve.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do [ -s "$work/serve.out" ] && break; sleep 0.1; done
addr=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["listening"])' "$work/serve.out")
"$venv/bin/python" "$root/bench/serve/openai_client.py" "http://$addr/v1" "$token" "$prompt" "$predicted" | tee "$work/openai.json"
kill -TERM $pid; wait $pid
