"""bench/lm stage 4: `hone export` of a LoRA run, loaded back in Python. transformers + peft load the
base model (the same GGUF, f32) with the PEFT adapter hone wrote, and transformers loads the merged
Hugging Face directory; the two must give the same next-token logits (goal: within 1e-4) on the same
token ids, and the merged directory's tokenizer must give hone's token ids."""
import datetime, json, os, subprocess, sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

model, export, ids_file, out_json, results_md = sys.argv[1:6]
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
base = AutoModelForCausalLM.from_pretrained(os.path.dirname(model), gguf_file=os.path.basename(model),
                                            dtype=torch.float32)
adapted = PeftModel.from_pretrained(base, f"{export}/adapter").eval()
merged = AutoModelForCausalLM.from_pretrained(f"{export}/merged", dtype=torch.float32).eval()
tok = AutoTokenizer.from_pretrained(f"{export}/merged")
prompts = [json.loads(l) for l in open(ids_file)][:20]
diffs, moved, same_ids = [], [], 0
with torch.no_grad():
    for p in prompts:
        ids = torch.tensor([p["ids"]])
        a = adapted(ids).logits[0, -1]
        b = merged(ids).logits[0, -1]
        diffs.append(float((a - b).abs().max()))
        with adapted.disable_adapter():
            moved.append(float((adapted(ids).logits[0, -1] - b).abs().max()))
        text = tok.decode(p["ids"], skip_special_tokens=False)
        same_ids += tok(text, add_special_tokens=False)["input_ids"] == p["ids"]
res = json.load(open(out_json)) if os.path.exists(out_json) else {}
res["export"] = {"prompts": len(prompts), "max_abs_logit_diff_merged_vs_adapter": max(diffs),
                 "tokenizer_round_trip_identical": same_ids,
                 "max_abs_logit_diff_merged_vs_base_alone": max(moved)}
res["date"] = datetime.date.today().isoformat()
json.dump(res, open(out_json, "w"), indent=2)
commit = subprocess.run(["git", "-C", os.path.dirname(os.path.dirname(results_md)), "rev-parse", "--short", "HEAD"],
                        capture_output=True, text=True).stdout.strip()
with open(results_md, "a") as fh:
    fh.write(f"| {res['date']} | lm | `hone export` of a SmolLM2 LoRA run: merged directory vs base + PEFT adapter in transformers + peft, {len(prompts)} prompts | "
             f"max abs logit difference {max(diffs):.1e} (base alone differs by {max(moved):.1e}, so the adapter is applied); merged tokenizer gives hone's ids on {same_ids}/{len(prompts)} prompts | transformers + peft | – | goal: within 1e-4; commit {commit} |\n")
print(json.dumps(res["export"]))
