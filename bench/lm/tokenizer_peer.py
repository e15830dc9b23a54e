"""bench/lm stage 1 peer: token ids from `transformers`' tokenizer loaded from the same GGUF file
(through the `gguf` package), for every text of a JSONL file, as JSONL {"id", "ids"}."""
import json, sys

from transformers import AutoTokenizer

gguf, texts, out = sys.argv[1:4]
import os
tok = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(gguf)), gguf_file=os.path.basename(gguf))
with open(out, "w") as f:
    for l in open(texts):
        r = json.loads(l)
        f.write(json.dumps({"id": r["id"], "ids": tok(r["text"], add_special_tokens=False)["input_ids"]}) + "\n")
