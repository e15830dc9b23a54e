"""Build a reference export directory from the local MiniLM, plus the expected-output file, to test check.py.

It writes what hone's exporter is meant to write (see check.py's docstring for the layout), using only
safetensors/json for the directory, and computes the expected numbers independently of the export: with
transformers' BertModel loaded from the *source* MiniLM directory and the classifier / mean pooling applied
by hand. So `check.py` passing on the result shows that the names and files in the directory are right
(a wrongly named tensor would be freshly initialised by transformers and the numbers would not match).

usage:
  make_reference.py --kind cls  --out DIR --expect FILE [--src MODEL_DIR] [--texts JSONL] [--n 20]
                    [--labels-from TRAIN_JSONL] [--num-labels 77] [--seed 0] [--perturb EPS]
                    [--keep-position-ids]
  make_reference.py --kind mean --out DIR --expect FILE [--src MODEL_DIR] [--no-normalize] [--perturb EPS]
                    [--minimal]   (mean: omit config_sentence_transformers.json and the 2_Normalize folder)

--perturb EPS adds EPS to the first number of every expected vector, so check.py must fail when EPS > tol.
Prints one JSON line describing what it wrote.
"""
import argparse
import json
import os
import shutil
import sys

for _k, _v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_k, _v)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SRC = os.path.join(os.environ.get("HONE_ROOT", os.path.join(HERE, "..", "..")), "models", "all-MiniLM-L6-v2")
DEFAULT_TEXTS = os.path.join(os.environ.get("HONE_SHARED", os.path.join(HERE, "..", "..", "..", "shared")),
                             "datasets", "banking77", "test.jsonl")
EXTRA_TEXTS = ["", "Hello, WORLD!  Café déjà-vu 🙂", "x " * 200]  # empty, accents/emoji, long (> 128 tokens)


def read_texts(path, n):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(str(json.loads(line)["text"]))
                if len(out) >= n:
                    break
    return out + EXTRA_TEXTS


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["cls", "mean"], required=True)
    ap.add_argument("--src", default=DEFAULT_SRC)
    ap.add_argument("--out", required=True)
    ap.add_argument("--expect", required=True)
    ap.add_argument("--texts", default=DEFAULT_TEXTS)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--labels-from", default=None, help="JSONL whose sorted distinct labels name the classes")
    ap.add_argument("--num-labels", type=int, default=77)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--perturb", type=float, default=0.0)
    ap.add_argument("--keep-position-ids", action="store_true")
    ap.add_argument("--no-normalize", action="store_true")
    ap.add_argument("--minimal", action="store_true")
    ap.add_argument("--max-seq-length", type=int, default=128, help="mean: sentence_bert_config max_seq_length")
    a = ap.parse_args()

    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    src_cfg = json.load(open(os.path.join(a.src, "config.json")))
    weights = load_file(os.path.join(a.src, "model.safetensors"))
    if not a.keep_position_ids:
        weights.pop("embeddings.position_ids", None)
    shutil.copyfile(os.path.join(a.src, "tokenizer.json"), os.path.join(a.out, "tokenizer.json"))
    texts = read_texts(a.texts, a.n)

    base = AutoModel.from_pretrained(a.src, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(a.src, local_files_only=True)
    info = {"kind": a.kind, "out": a.out, "expect": a.expect, "n": len(texts), "perturb": a.perturb}

    if a.kind == "cls":
        if a.labels_from:
            with open(a.labels_from, encoding="utf-8") as f:
                labels = sorted({str(json.loads(l)["label"]) for l in f if l.strip()})
        else:
            labels = [f"LABEL_{i}" for i in range(a.num_labels)]
        g = torch.Generator().manual_seed(a.seed)
        hidden = src_cfg["hidden_size"]
        cw = (torch.randn(len(labels), hidden, generator=g) * 0.2).contiguous()
        cb = (torch.randn(len(labels), generator=g) * 0.1).contiguous()
        tensors = {"bert." + k: v.contiguous() for k, v in weights.items()}
        tensors["classifier.weight"] = cw
        tensors["classifier.bias"] = cb
        save_file(tensors, os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
        cfg = dict(src_cfg)
        cfg.pop("_name_or_path", None)
        cfg["architectures"] = ["BertForSequenceClassification"]
        cfg["id2label"] = {str(i): l for i, l in enumerate(labels)}
        cfg["label2id"] = {l: i for i, l in enumerate(labels)}
        json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=2)
        rows = []
        with torch.no_grad():
            for t in texts:
                enc = tok(t, return_tensors="pt", truncation=True, max_length=src_cfg["max_position_embeddings"])
                pooled = base(**enc).pooler_output[0]  # tanh(W_p h_[CLS] + b_p); dropout is off in eval
                rows.append({"text": t, "logits": (pooled @ cw.T + cb).tolist()})
        key = "logits"
        info["num_labels"] = len(labels)
    else:
        save_file({k: v.contiguous() for k, v in weights.items()}, os.path.join(a.out, "model.safetensors"),
                  metadata={"format": "pt"})
        cfg = dict(src_cfg)
        cfg.pop("_name_or_path", None)
        json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=2)
        normalize = not a.no_normalize
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        if normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
            if not a.minimal:
                os.makedirs(os.path.join(a.out, "2_Normalize"), exist_ok=True)
        json.dump(modules, open(os.path.join(a.out, "modules.json"), "w"), indent=2)
        json.dump({"max_seq_length": a.max_seq_length, "do_lower_case": False},
                  open(os.path.join(a.out, "sentence_bert_config.json"), "w"), indent=2)
        os.makedirs(os.path.join(a.out, "1_Pooling"), exist_ok=True)
        json.dump({"word_embedding_dimension": src_cfg["hidden_size"], "pooling_mode_cls_token": False,
                   "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                   "pooling_mode_mean_sqrt_len_tokens": False},
                  open(os.path.join(a.out, "1_Pooling", "config.json"), "w"), indent=2)
        if not a.minimal:
            json.dump({"__version__": {"sentence_transformers": "2.0.0"}, "prompts": {}, "default_prompt_name": None,
                       "similarity_fn_name": "cosine"},
                      open(os.path.join(a.out, "config_sentence_transformers.json"), "w"), indent=2)
        rows = []
        with torch.no_grad():
            for t in texts:
                enc = tok(t, return_tensors="pt", truncation=True, max_length=a.max_seq_length)
                h = base(**enc).last_hidden_state[0]
                m = enc["attention_mask"][0].unsqueeze(-1).to(h.dtype)
                e = (h * m).sum(0) / m.sum().clamp(min=1e-9)
                if normalize:
                    e = torch.nn.functional.normalize(e, p=2, dim=0)
                rows.append({"text": t, "embedding": e.tolist()})
        key = "embedding"
        info["normalize"] = normalize
    if a.perturb:
        for r in rows:
            r[key][0] += a.perturb
    with open(a.expect, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    info["files"] = sorted(os.path.relpath(os.path.join(d, x), a.out) for d, _, fs in os.walk(a.out) for x in fs)
    print(json.dumps(info))


if __name__ == "__main__":
    sys.exit(main())
