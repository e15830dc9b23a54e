"""Rewrite bench/RESULTS.md as one current table per benchmark with the history below it.

Benchmarks append to RESULTS.md (a `| date | bench | figure | ... |` row, or a `## NAME — DATE (commit
C)` section with its own tables); bench/run calls this afterwards. Idempotent: it reads its own output.
Current = per benchmark, the latest row for each figure (rows repeated verbatim are kept once), and the
latest section of each sectioned benchmark. Everything else goes to History, newest first.
"""
import re, sys

path = sys.argv[1]
HEADER = "| date | bench | figure | hone | peer | ratio | notes |\n|---|---|---|---|---|---|---|\n"
SECTION = re.compile(r"^#{2,4} (?P<name>[\w-]+) — (?P<date>\d{4}-\d{2}-\d{2}) \(commit (?P<commit>\w+)\)\s*$")
PRODUCT = {
    "ngram": "Product path beside the bench binary: `bench/run defaults` runs `hone run` + `hone predict` with "
             "the default settings (plus `contamination = \"drop_train\"`); see its rows.",
}

# Every item gets a place in time. In a file this script wrote, `### ` sections and rows under
# `## Current` are current, `#### ` sections and rows under `## History` are history (newest first), and
# anything a benchmark appended afterwards (`## ` sections, rows after the history) is newest.
lines = open(path).read().splitlines()
tidied = "## History" in lines
items = []  # (zone, position, kind, payload); zone 0 history, 1 current, 2 appended / untidied
zone, cur = 2, None
for i, line in enumerate(lines):
    m = SECTION.match(line)
    if line == "## Current":
        zone, cur = 1, None
        continue
    if line == "## History":
        zone, cur = 0, None
        continue
    if m:
        level = len(line) - len(line.lstrip("#"))
        z = {3: 1, 4: 0}.get(level, 2) if tidied else 2
        if level in (2, 4):
            zone = 2  # rows after the history sections were appended by a benchmark
        cur = [m["name"], m["date"], m["commit"], []]
        items.append((z, i, "section", cur))
        continue
    if re.match(r"^\| \d{4}-\d{2}-\d{2} \|", line):
        items.append((zone if tidied else 2, i, "row", line))
        cur = None
        continue
    # The history table's own header ends a section; a section's wider table (8 columns) does not.
    if line.startswith("#") or line.startswith("| date |") or line == "|---|---|---|---|---|---|---|":
        cur = None
        continue
    if cur is not None:
        cur[3].append(line)
# Chronological: history oldest first (it is stored newest first), then current, then appended.
chron = sorted(items, key=lambda t: (t[0], -t[1] if t[0] == 0 else t[1]))
rows = [(n, it[3]) for n, it in enumerate(chron) if it[2] == "row"]
sections = [[n] + it[3] for n, it in enumerate(chron) if it[2] == "section"]
seen, uniq = set(), []
for i, line in rows:
    if line not in seen:
        seen.add(line)
        uniq.append((i, line))
cells = lambda l: [c.strip() for c in l.strip().strip("|").split("|")]
benches = sorted({cells(l)[1] for _, l in uniq})
current, history = [], []
for b in benches:
    mine = [(i, l) for i, l in uniq if cells(l)[1] == b]
    latest = {}
    for i, l in mine:
        latest[cells(l)[2]] = (i, l)  # later rows replace earlier ones with the same figure
    keep = {i for i, _ in latest.values()}
    current += [l for i, l in mine if i in keep]
    history += [(cells(l)[0], i, l) for i, l in mine if i not in keep]
history.sort(key=lambda t: t[1], reverse=True)

names = sorted({s[1] for s in sections})
cur_sec, old_sec = [], []
for n in names:
    mine = [s for s in sections if s[1] == n]
    cur_sec.append(mine[-1])
    old_sec += mine[:-1]
old_sec.sort(key=lambda s: s[0], reverse=True)


def body(lines):
    text = "\n".join(lines).strip("\n")
    return text + "\n" if text else ""


out = ["# Benchmark results\n",
       "Written by the benchmarks (`bench/run NAME`) and tidied by `bench/tidy_results.py`: the current figures of\n"
       "each benchmark first (the latest run of each figure), the history below, newest first. Accuracy figures\n"
       "quoted anywhere must be reproducible through `hone` on a stated project: `defaults`, `leaks` and the\n"
       "`hone run` rows are; `ngram` and `encoder` time example binaries, with the product path beside them.\n",
       "## Current\n", HEADER + "\n".join(current) + "\n"]
for b in benches:
    if b in PRODUCT:
        out.append(f"{b}: {PRODUCT[b]}\n")
for s in cur_sec:
    out.append(f"### {s[1]} — {s[2]} (commit {s[3]})\n\n" + body(s[4]))
out.append("## History\n")
if history:
    out.append(HEADER + "\n".join(l for _, _, l in history) + "\n")
for s in old_sec:
    out.append(f"#### {s[1]} — {s[2]} (commit {s[3]})\n\n" + body(s[4]))
open(path, "w").write("\n".join(out))
