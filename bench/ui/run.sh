#!/usr/bin/env bash
# bench/run ui — the dashboard in a real headless Chromium (the test
# `the_dashboard_logs_in_by_token_shows_runs_and_records_a_relabel_in_a_real_browser`), keeping a
# screenshot of each page it visits in bench/results/ui/ (login, a predict token refused, runs, a
# run's card, a comparison, the data report, drift, the review queue, a recorded relabel).
set -euo pipefail
root=${HONE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
out="$root/bench/results/ui"
bash "$root/scripts/get-chromium"
rm -rf "$out" && mkdir -p "$out"
cd "$root"
HONE_REQUIRE_BROWSER=1 HONE_UI_SHOTS="$out" \
  cargo test --release -q -p hone --test serve the_dashboard -- --nocapture
ls -1 "$out"
