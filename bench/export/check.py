"""Check a hone export directory against the numbers hone itself computed, with transformers / sentence-transformers.

usage: check.py --kind cls|mean --dir EXPORT_DIR --expect FILE [--tol 1e-4] [--threads 1]

FILE is JSONL written by hone: {"text": str, "logits": [float, ...]} per line (kind cls) or
{"text": str, "embedding": [float, ...]} (kind mean). Prints ONE JSON line
{"kind", "n", "max_abs_diff", "tol", "ok", ...} on stdout and exits 1 when not ok (diff above tol, a shape
mismatch, or a tensor that transformers did not load from the directory), 2 on bad usage/unreadable input.
Runs offline (HF_HUB_OFFLINE=1, TRANSFORMERS_OFFLINE=1, local_files_only).

What the checker expects (facts checked with transformers 5.23.0, sentence-transformers 6.2.0, tokenizers 0.23.3;
bench/export/make_reference.py builds such directories from the local MiniLM):

kind cls -- a Hugging Face BertForSequenceClassification directory, loaded with
  AutoModelForSequenceClassification.from_pretrained(DIR) + AutoTokenizer.from_pretrained(DIR):
  config.json        BERT config (model_type "bert", hidden_size, num_hidden_layers, num_attention_heads,
                     intermediate_size, max_position_embeddings, type_vocab_size, vocab_size, layer_norm_eps,
                     hidden_act, pad_token_id, ...), "architectures": ["BertForSequenceClassification"],
                     "id2label": {"0": name, ...} and "label2id": {name: 0, ...}; num_labels is taken from
                     id2label (and must equal the length of every expected logits vector).
  model.safetensors  float32, metadata {"format": "pt"}, tensor names:
                       bert.embeddings.word_embeddings.weight [vocab, H]
                       bert.embeddings.position_embeddings.weight [max_pos, H]
                       bert.embeddings.token_type_embeddings.weight [type_vocab, H]
                       bert.embeddings.LayerNorm.weight / .bias [H]
                       bert.encoder.layer.N.attention.self.{query,key,value}.weight [H, H] / .bias [H]
                       bert.encoder.layer.N.attention.output.dense.weight [H, H] / .bias
                       bert.encoder.layer.N.attention.output.LayerNorm.weight / .bias
                       bert.encoder.layer.N.intermediate.dense.weight [I, H] / .bias [I]
                       bert.encoder.layer.N.output.dense.weight [H, I] / .bias [H]
                       bert.encoder.layer.N.output.LayerNorm.weight / .bias
                       bert.pooler.dense.weight [H, H] / .bias [H]
                       classifier.weight [num_labels, H] / classifier.bias [num_labels]
                     (Linear weights are [out, in], as torch stores them.) logits = classifier(tanh(pooler.dense(
                     h_[CLS]))). bert.embeddings.position_ids is optional (a non-persistent buffer; accepted or
                     absent). Any tensor missing, unexpected or of the wrong shape fails the check: transformers
                     would otherwise silently initialise it at random (a wrong shape makes it refuse to load).
                     transformers 5 also loads the encoder from un-prefixed names (embeddings..., encoder...,
                     pooler...) into BertForSequenceClassification, but "bert." is the canonical form; the head
                     must be named classifier.weight / classifier.bias.
  tokenizer.json     alone is enough for AutoTokenizer (with config.json's model_type "bert" it builds
                     BertTokenizer, the tokenizers-backed class in transformers 5): tokenizer_config.json,
                     special_tokens_map.json and vocab.txt are NOT needed; lower-casing comes from the
                     tokenizer.json normalizer, [CLS]/[SEP]/[PAD]/[UNK]/[MASK] are the class defaults. Without
                     tokenizer_config.json model_max_length is unset (a huge sentinel), so this checker truncates
                     at config.max_position_embeddings; transformers ignores (overrides per call) the
                     "truncation"/"padding" blocks inside tokenizer.json. Add tokenizer_config.json with
                     {"model_max_length": 512, "do_lower_case": true, "tokenizer_class": "BertTokenizer"} if
                     users should get truncation by default.

kind mean -- a sentence-transformers directory, loaded with SentenceTransformer(DIR):
  modules.json       [{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                      {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
                      optional {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]
                     (these classic type names still load in sentence-transformers 6; without modules.json
                     SentenceTransformer falls back to mean pooling with NO Normalize and a warning).
  sentence_bert_config.json  {"max_seq_length": 128, "do_lower_case": false}: the truncation length. Needed
                     for MiniLM parity: without it max_seq_length falls back to config.max_position_embeddings
                     (512) and texts longer than 128 tokens embed differently.
  1_Pooling/config.json  {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": true} is enough (the
                     other classic flags pooling_mode_cls_token/max_tokens/mean_sqrt_len_tokens default to
                     false); sentence-transformers 6's own form {"embedding_dimension": 384, "pooling_mode":
                     "mean"} loads too.
  2_Normalize/       not needed as a folder: the module has no files (only its modules.json entry matters).
  config.json, model.safetensors, tokenizer.json  as for a BertModel: tensor names WITHOUT the "bert."
                     prefix (embeddings..., encoder.layer.N...); "bert."-prefixed names load too. pooler.dense.*
                     is unused by mean pooling and may be omitted (transformers then logs it as MISSING).
  config_sentence_transformers.json  optional (version, prompts, similarity_fn_name).
"""
import argparse
import json
import os
import sys

for _k, _v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_k, _v)


def read_expect(path, key):
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            if "text" not in r or key not in r:
                raise ValueError(f"{path}:{i}: need fields 'text' and '{key}'")
            rows.append((str(r["text"]), [float(x) for x in r[key]]))
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def check_cls(d, rows):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    problems = []
    cfg = AutoConfig.from_pretrained(d, local_files_only=True)
    model, info = AutoModelForSequenceClassification.from_pretrained(d, local_files_only=True, output_loading_info=True)
    model.eval()
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        v = [x for x in (info.get(k) or []) if not str(x).endswith("position_ids")]
        if v:
            problems.append(f"{k}: {[str(x) for x in v][:10]}")
    tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
    n_labels = len(cfg.id2label or {})
    if len(cfg.label2id or {}) != n_labels:
        problems.append(f"label2id has {len(cfg.label2id or {})} entries, id2label {n_labels}")
    max_len = min(int(tok.model_max_length), int(cfg.max_position_embeddings))
    diff, agree = 0.0, 0
    with torch.no_grad():
        for i, (text, want) in enumerate(rows):
            if len(want) != n_labels:
                problems.append(f"row {i}: {len(want)} logits but id2label has {n_labels} labels")
                break
            enc = tok(text, return_tensors="pt", truncation=True, max_length=max_len)
            got = model(**enc).logits[0].double()
            w = torch.tensor(want, dtype=torch.float64)
            diff = max(diff, float((got - w).abs().max()))
            agree += int(got.argmax() == w.argmax())
    extra = {"num_labels": n_labels, "argmax_agree": agree, "architectures": cfg.architectures,
             "tokenizer_class": type(tok).__name__}
    return diff, problems, extra


def check_mean(d, rows):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    problems = []
    if not os.path.exists(os.path.join(d, "modules.json")):
        problems.append("no modules.json: SentenceTransformer would guess a pipeline")
    st = SentenceTransformer(d, device="cpu", local_files_only=True)
    modules = [type(m).__name__ for m in st]
    texts = [t for t, _ in rows]
    want = [w for _, w in rows]
    dims = {len(w) for w in want}
    got = st.encode(texts, batch_size=1, convert_to_numpy=True, show_progress_bar=False).astype(np.float64)
    if len(dims) != 1 or got.shape[1] not in dims:
        problems.append(f"embedding sizes {sorted(dims)} vs model {got.shape[1]}")
        diff = float("inf")
    else:
        diff = float(np.abs(got - np.array(want, dtype=np.float64)).max())
    extra = {"dim": int(got.shape[1]), "modules": modules, "max_seq_length": st.max_seq_length}
    return diff, problems, extra


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=["cls", "mean"], required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--expect", required=True)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    try:
        rows = read_expect(a.expect, "logits" if a.kind == "cls" else "embedding")
    except (OSError, ValueError) as e:
        print(f"check.py: {e}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(a.threads)
    try:
        diff, problems, extra = (check_cls if a.kind == "cls" else check_mean)(a.dir, rows)
    except Exception as e:  # e.g. a tensor of the wrong shape: transformers refuses to load the directory
        diff, problems, extra = float("inf"), [f"load/run failed: {type(e).__name__}: {str(e)[-600:]}"], {}
    ok = not problems and diff <= a.tol
    out = {"kind": a.kind, "n": len(rows), "max_abs_diff": diff, "tol": a.tol, "ok": ok, **extra}
    if problems:
        out["problems"] = problems
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
