"""bench/lm stage 2 input: 50 customer messages from Bitext (every k-th), as JSONL {"id", "text"}."""
import json, sys

datasets, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 50
rows = [json.loads(l) for l in open(f"{datasets}/bitext_customer_support/train_full.jsonl")]
with open(out, "w") as f:
    for i, r in enumerate(rows[:: len(rows) // n][:n]):
        f.write(json.dumps({"id": f"bitext-{i}", "text": r["text"]}) + "\n")
