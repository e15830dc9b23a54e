"""bench/serve, part 2: `hone drift` calibrated through the product. The served BANKING77 model gets
windows of traffic and `hone --json drift --window W` judges each:

* false alarms: N_WINDOWS windows of W texts drawn with replacement from the held-back half of the
  official test set (in distribution, never trained on, not the reference); the alarm rate and its
  one-sided 95% Clopper-Pearson upper bound;
* detection delay: in-distribution traffic, then from request 0 on one of three shifts — a label-mix
  change (texts of 8 intents only), out-of-scope inputs (TREC questions), a new vocabulary (held-back
  texts with a product name and a code appended) — with `hone drift` every STEP requests; the delay
  is the number of shifted requests sent when the first alarm fires.

usage: drift.py HONE WORK TOKEN DATASETS
"""
import json
import os
import random
import subprocess
import sys
import urllib.request

hone, work, token, datasets = sys.argv[1:5]
W = int(os.environ.get("DRIFT_WINDOW", "150"))
N_WINDOWS = int(os.environ.get("DRIFT_WINDOWS", "150"))
STEP = int(os.environ.get("DRIFT_STEP", "25"))
project = os.path.join(work, "b77")
rng = random.Random(7)
held = [json.loads(l) for l in open(os.path.join(work, "heldback.jsonl"))]


def send(texts):
    for i in range(0, len(texts), 256):
        body = json.dumps({"texts": texts[i:i + 256], "consent": True}).encode()
        req = urllib.request.Request("http://127.0.0.1:18080/v1/predict", data=body,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        urllib.request.urlopen(req, timeout=60).read()


def drift():
    out = subprocess.run([hone, "-C", project, "--json", "drift", "--window", str(W)], capture_output=True, text=True)
    assert out.returncode in (0, 3), out.stderr
    v = json.loads(out.stdout)
    return out.returncode == 3, [f["feature"] for f in v["features"] if f["alarm"]]


def cp_upper(k, n, conf=0.95):
    from math import comb
    lo, hi = k / n, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        cdf = sum(comb(n, i) * mid**i * (1 - mid)**(n - i) for i in range(k + 1))
        lo, hi = (mid, hi) if cdf > 1 - conf else (lo, mid)
    return hi


alarms, by_feature = 0, {}
for w in range(N_WINDOWS):
    send([rng.choice(held)["text"] for _ in range(W)])
    fired, feats = drift()
    alarms += fired
    for f in feats:
        by_feature[f] = by_feature.get(f, 0) + 1
false_alarms = {"windows": N_WINDOWS, "window": W, "alarms": alarms, "rate": alarms / N_WINDOWS,
                "clopper_pearson_upper_95": cp_upper(alarms, N_WINDOWS), "by_feature": by_feature}
print("false alarms:", json.dumps(false_alarms), flush=True)

labels = sorted({r["label"] for r in held})
few = set(rng.sample(labels, 8))
trec = [json.loads(l)["text"] for l in open(os.path.join(datasets, "trec", "test.jsonl"))]
shifts = {
    "label_mix": lambda: rng.choice([r for r in held if r["label"] in few])["text"],
    "out_of_scope": lambda: rng.choice(trec),
    "new_vocabulary": lambda: rng.choice(held)["text"] + " on my Zorbly Flex " + rng.choice(["ZX-40", "QF-12", "PR-77"]) + " plan",
}
delays = {}
for name, draw in shifts.items():
    send([rng.choice(held)["text"] for _ in range(W)])
    quiet_before = not drift()[0]
    sent, fired, feats = 0, False, []
    while sent < 4 * W and not fired:
        send([draw() for _ in range(STEP)])
        sent += STEP
        fired, feats = drift()
    delays[name] = {"quiet_before": quiet_before, "delay_requests": sent if fired else None,
                    "alarmed": feats, "checked_every": STEP}
    print("shift", name, json.dumps(delays[name]), flush=True)
json.dump({"false_alarms": false_alarms, "detection": delays}, open(os.path.join(work, "drift.json"), "w"), indent=2)
