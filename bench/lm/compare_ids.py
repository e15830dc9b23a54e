"""bench/lm stage 1: compare hone's token ids with transformers' on the same texts. A difference is
classified as "whitespace split" when both sides give the same tokens once adjacent whitespace-only
tokens are joined (transformers' GGUF converter uses plain byte-level pre-tokenization; llama.cpp's
`smollm` pre-tokenizer, which hone follows, isolates digits first, so a run of spaces before a digit
is split differently)."""
import datetime, json, os, subprocess, sys

from transformers import AutoTokenizer

model, work, out_json, results_md = sys.argv[1:5]
tok = AutoTokenizer.from_pretrained(os.path.dirname(model), gguf_file=os.path.basename(model))
load = lambda p: {json.loads(l)["id"]: json.loads(l)["ids"] for l in open(p)}
peer, hone = load(f"{work}/ids-transformers.jsonl"), load(f"{work}/ids-hone.jsonl")
WS = set("ĠĊĉč")


def joined(ids):
    out = []
    for p in tok.convert_ids_to_tokens(ids):
        ws = all(c in WS for c in p)
        if ws and out and out[-1][0]:
            out[-1] = (True, out[-1][1] + p)
        else:
            out.append((ws, p))
    return out


diff = [k for k in peer if peer[k] != hone.get(k)]
ws_only = [k for k in diff if joined(peer[k]) == joined(hone[k])]
res = {"bench": "lm", "date": datetime.date.today().isoformat(), "stage": "tokenizer",
       "texts": len(peer), "identical": len(peer) - len(diff), "differ": len(diff),
       "differ_only_in_whitespace_split": len(ws_only), "other": sorted(set(diff) - set(ws_only))[:20]}
json.dump(res, open(out_json, "w"), indent=2)
commit = subprocess.run(["git", "-C", os.path.dirname(os.path.dirname(results_md)), "rev-parse", "--short", "HEAD"],
                        capture_output=True, text=True).stdout.strip()
with open(results_md, "a") as fh:
    fh.write(f"| {res['date']} | lm | SmolLM2-135M-Instruct token ids vs transformers (same GGUF), {len(peer)} texts | "
             f"{res['identical']} identical; {len(ws_only)} differ only in how a whitespace run before a digit is split; "
             f"{len(diff) - len(ws_only)} other | transformers {tok.__class__.__name__} from GGUF | – | "
             f"hone follows llama.cpp's `smollm` pre-tokenizer (digits isolated first); commit {commit} |\n")
print(json.dumps(res))
