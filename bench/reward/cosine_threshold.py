"""The on-topic threshold of the house-rules grader, measured: MiniLM cosine similarity between a
reference reply and (a) another reference reply of the same intent (on topic, different words),
(b) a reference reply of another intent (off topic), (c) generic replies that would game a lenient
rule. Usage: cosine_threshold.py TRAIN_FULL.jsonl MINILM_DIR OUT.json"""
import json
import random
import sys

import numpy as np
from sentence_transformers import SentenceTransformer

rows = [json.loads(l) for l in open(sys.argv[1])]
model = SentenceTransformer(sys.argv[2], device="cpu")
rng = random.Random(7)
sample = rng.sample(rows, 400)
by_intent = {}
for r in rows:
    by_intent.setdefault(r["label"], []).append(r)
generic = [
    "Thank you for reaching out. I'm here to help. Is there anything else I can help you with?",
    "I understand your concern and I'm happy to assist you. Please let me know if there is anything else I can do for you.",
    "Thanks for contacting us! Our team will look into it. Let me know if you need further help.",
]


def emb(texts):
    return model.encode(texts, normalize_embeddings=True, batch_size=32)


refs = emb([r["response"] for r in sample])
same = emb([rng.choice([o for o in by_intent[r["label"]] if o["id"] != r["id"]])["response"] for r in sample])
other = emb([rng.choice(rows if True else [])["response"] if False else rng.choice([o for o in rows if o["label"] != r["label"]])["response"] for r in sample])
gen = emb(generic)
cs = (refs * same).sum(1)
co = (refs * other).sum(1)
cg = (refs @ gen.T).ravel()
q = lambda a: {p: round(float(np.percentile(a, p)), 4) for p in (5, 10, 25, 50, 75, 90, 95, 99)}
out = {"same_intent": q(cs), "other_intent": q(co), "generic": q(cg)}
for t in (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7):
    out[f"t={t}"] = {
        "same_intent_pass": round(float((cs >= t).mean()), 4),
        "other_intent_pass": round(float((co >= t).mean()), 4),
        "generic_pass": round(float((cg >= t).mean()), 4),
    }
json.dump(out, open(sys.argv[3], "w"), indent=1)
print(json.dumps(out, indent=1))
