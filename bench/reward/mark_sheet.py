"""A scripted reviewer for `hone review answers` sheets (issue 14, DPO from reviews). The marking rule,
applied to each prompt's answers: count the house rules an answer keeps, of the four that need no
encoder (at most 80 words, repeats the message's order or invoice number, promises no refund, amount
or date, ends by offering further help; patterns read from house_rules.toml, so the reviewer and the
grader never drift apart). The answers keeping the most rules are marked `strong`, those keeping the
fewest `weak`; a prompt whose answers all keep as many rules is left unmarked (no pair). Usefulness is
rated 1 + rules kept (1-5). Relevance (the cosine rule) is not judged here: the DPO pairs teach form.
Usage: mark_sheet.py SHEET.jsonl DATA.jsonl HOUSE_RULES.toml OUT.jsonl"""
import json
import re
import sys
import tomllib
from collections import defaultdict

sheet, data, rules_path, out = sys.argv[1:5]
rules = tomllib.load(open(rules_path, "rb"))["graders"]
no_promise = re.compile(rules["no_promise"]["pattern"], re.I)
offer = re.compile(rules["offer"]["pattern"], re.I)
number = {json.loads(l)["id"]: json.loads(l)["number"] for l in open(data)}


def kept(answer, item):
    words = len(answer.split())
    return sum([
        3 <= words <= 80,
        number.get(item, "") in answer,
        not no_promise.search(answer),
        bool(offer.search(answer)),
    ])


lines = [json.loads(l) for l in open(sheet) if l.strip()]
by_item = defaultdict(list)
for l in lines:
    l["_kept"] = kept(l["answer"], l["item"])
    by_item[l["item"]].append(l)
marked = 0
for group in by_item.values():
    hi, lo = max(l["_kept"] for l in group), min(l["_kept"] for l in group)
    for l in group:
        l["usefulness"] = 1 + l["_kept"]
        if hi > lo and l["_kept"] in (hi, lo):
            l["mark"] = "strong" if l["_kept"] == hi else "weak"
            marked += 1
with open(out, "w") as f:
    for l in lines:
        l.pop("_kept")
        f.write(json.dumps(l) + "\n")
print(f"{len(lines)} answers to {len(by_item)} prompts, {marked} marked")
