"""bench/encoder peers: all-MiniLM-L6-v2 with PyTorch / sentence-transformers / SetFit on BANKING77.

Each subcommand prints ONE JSON line on stdout (diagnostics go to stderr). The model is always loaded from
the local directory (--model, default $HONE_ROOT/models/all-MiniLM-L6-v2), offline. Threads: --threads N
sets torch.set_num_threads(N) (and 1 inter-op thread); run.sh should also pin OMP/MKL threads.
Labels map to ids by label name sorted in code-point order (Python sorted(): "Refund_not_showing_up"
comes first in BANKING77), over the labels of the training input. --limit N (all subcommands that read data) keeps the first N lines
of the train (or sample) and of the test file, for smoke tests; --test-limit N overrides it for the test file.

  sample    --train T --k K --seed S --out FILE
            K examples per label: labels sorted by name, each label's rows sorted by id, then
            numpy.random.default_rng(S).choice(n_label, K, replace=False) per label in that order (one
            generator for the whole run); the chosen rows are written in label order, within a label by id.
            A label with fewer than K rows keeps all of them. Output JSONL keeps the input fields.
  frozen    --train T --test TEST --threads N [--batch 64]
            SentenceTransformer(Transformer(max_seq_length=128) + Pooling(384, mean) + Normalize) embeddings;
            test-set encode timed 3 times; LogisticRegression(max_iter=2000) with C=1 and C=10.
  frozen_lr --sample FILE --test TEST [--threads N] [--batch 64]
            the same frozen embeddings, LogisticRegression(max_iter=2000, C=1) fitted on the sample.
  finetune  --train T --test TEST --threads N [--epochs 3] [--lr 5e-5] [--batch 32] [--max-length 64] [--seed 0]
            AutoModelForSequenceClassification (BERT + pooler + linear head, 77 labels); plain loop: AdamW(lr,
            weight_decay=0.01), linear decay to 0 without warm-up, grad-norm clip 1.0, dropout on (train
            mode), shuffle per epoch with torch.Generator seeded once, dynamic padding to the batch's longest
            sequence, truncation at --max-length; test accuracy after every epoch (eval batches of 128).
  steptime  --threads N [--steps 10] [--warmup 2] [--batch 32] [--length 64] [--train T] [--lr 5e-5]
            one fixed batch (the first --batch lines of the train file) padded/truncated to exactly --length
            tokens; times full steps (forward, loss, backward, clip, optimizer.step, zero_grad).
  setfit    --sample FILE --test TEST [--threads 2] [--seed 0] [--num-iterations 2] [--epochs 1] [--batch 16]
            setfit.Trainer with SetFitModel(body = the frozen pipeline above, head = LogisticRegression()),
            TrainingArguments(num_iterations=2, num_epochs=1, batch_size=16, seed) (setfit 1.x still takes
            num_iterations: 2 positive + 2 negative pairs per example, CosineSimilarityLoss).
"""
import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time

for _k, _v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false"),
               ("HF_DATASETS_OFFLINE", "1"), ("WANDB_DISABLED", "true"), ("DISABLE_MLFLOW_INTEGRATION", "TRUE"),
               ("TQDM_DISABLE", "1")):
    os.environ.setdefault(_k, _v)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(os.environ.get("HONE_ROOT", os.path.join(HERE, "..", "..")), "models", "all-MiniLM-L6-v2")


def log(*a):
    print("encoder:", *a, file=sys.stderr, flush=True)


def load_rows(path, limit=None):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
                if limit and len(rows) >= limit:
                    break
    return rows


def texts_labels(rows):
    return [str(r["text"]) for r in rows], [str(r["label"]) for r in rows]


def set_threads(n):
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set
        pass


def versions():
    import importlib.metadata as md

    out = {}
    for p in ("torch", "transformers", "sentence-transformers", "setfit", "scikit-learn", "tokenizers"):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    return out


_STDOUT = sys.stdout  # the one JSON line goes here; everything else printed while working goes to stderr


def emit(d):
    print(json.dumps(d), file=_STDOUT, flush=True)


# ---------------------------------------------------------------------------------------------- sample
def cmd_sample(a):
    import numpy as np

    rows = load_rows(a.train, a.limit)
    by = {}
    for r in rows:
        by.setdefault(str(r["label"]), []).append(r)
    rng = np.random.default_rng(a.seed)
    out, short = [], []
    for lab in sorted(by):
        grp = sorted(by[lab], key=lambda r: str(r["id"]))
        if len(grp) <= a.k:
            pick = list(range(len(grp)))
            if len(grp) < a.k:
                short.append(lab)
        else:
            pick = sorted(int(i) for i in rng.choice(len(grp), size=a.k, replace=False))
        out.extend(grp[i] for i in pick)
    with open(a.out, "w", encoding="utf-8") as f:
        for r in out:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    emit({"peer": "sample", "k": a.k, "seed": a.seed, "n": len(out), "labels": len(by), "short_labels": short,
          "out": a.out})


# ---------------------------------------------------------------------------------------------- frozen
def build_st(model_dir):
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 5.4 moved the modules; the old path still works but warns
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models

    body = models.Transformer(model_dir, max_seq_length=128)
    pool = models.Pooling(384, "mean")
    return SentenceTransformer(modules=[body, pool, models.Normalize()], device="cpu")


def encode(st, texts, batch):
    return st.encode(texts, batch_size=batch, convert_to_numpy=True, show_progress_bar=False)


def fit_lr(xtr, ytr, xte, yte, C):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    clf = LogisticRegression(max_iter=2000, C=C).fit(xtr, ytr)
    fit_s = time.perf_counter() - t0
    acc = float(np.mean(clf.predict(xte) == np.asarray(yte)))
    return acc, fit_s


def cmd_frozen(a):
    set_threads(a.threads)
    tr_x, tr_y = texts_labels(load_rows(a.train, a.limit))
    te_x, te_y = texts_labels(load_rows(a.test, a.test_limit or a.limit))
    t0 = time.perf_counter()
    st = build_st(a.model)
    load_s = time.perf_counter() - t0
    encode(st, te_x[:64], a.batch)  # warm-up
    t0 = time.perf_counter()
    xtr = encode(st, tr_x, a.batch)
    train_embed_s = time.perf_counter() - t0
    secs = []
    for i in range(3):
        t0 = time.perf_counter()
        xte = encode(st, te_x, a.batch)
        secs.append(time.perf_counter() - t0)
        log(f"frozen: test encode rep {i + 1}: {secs[-1]:.2f}s")
    acc1, fit1 = fit_lr(xtr, tr_y, xte, te_y, 1.0)
    acc10, fit10 = fit_lr(xtr, tr_y, xte, te_y, 10.0)
    n = len(te_x)
    emit({"peer": "st_frozen_lr", "threads": a.threads, "batch": a.batch, "n_train": len(tr_x), "n_test": n,
          "dim": int(xte.shape[1]), "accuracy_C1": acc1, "accuracy_C10": acc10,
          "embed_texts_per_s_min": n / max(secs), "embed_texts_per_s_median": n / statistics.median(secs),
          "embed_texts_per_s_max": n / min(secs), "test_embed_seconds": secs,
          "train_embed_seconds": train_embed_s, "train_embed_texts_per_s": len(tr_x) / train_embed_s,
          "lr_fit_seconds_C1": fit1, "lr_fit_seconds_C10": fit10, "load_seconds": load_s,
          "pipeline": "Transformer(max_seq_length=128)+Pooling(mean)+Normalize; LogisticRegression(max_iter=2000)",
          "versions": versions()})


def cmd_frozen_lr(a):
    set_threads(a.threads)
    tr_x, tr_y = texts_labels(load_rows(a.sample, a.limit))
    te_x, te_y = texts_labels(load_rows(a.test, a.test_limit or a.limit))
    st = build_st(a.model)
    t0 = time.perf_counter()
    xtr = encode(st, tr_x, a.batch)
    train_embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    xte = encode(st, te_x, a.batch)
    test_embed_s = time.perf_counter() - t0
    acc, fit_s = fit_lr(xtr, tr_y, xte, te_y, 1.0)
    emit({"peer": "frozen_lr", "threads": a.threads, "n_train": len(tr_x), "n_test": len(te_x), "accuracy": acc,
          "C": 1.0, "train_seconds": train_embed_s + fit_s, "train_embed_seconds": train_embed_s,
          "lr_fit_seconds": fit_s, "test_embed_seconds": test_embed_s, "versions": versions()})


# ---------------------------------------------------------------------------------------------- finetune
def build_cls(model_dir, labels, seed):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)  # the classifier head's initialisation
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)}, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return model, tok


def make_opt(model, lr):
    import torch

    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)


def accuracy(model, tok, texts, gold, max_length, batch=128):
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            enc = tok(texts[i:i + batch], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            pred = model(**enc).logits.argmax(-1)
            correct += int((pred == torch.as_tensor(gold[i:i + batch])).sum())
    model.train()
    return correct / len(texts)


def cmd_finetune(a):
    import torch
    from transformers import get_linear_schedule_with_warmup

    set_threads(a.threads)
    train_rows = load_rows(a.train, a.limit)
    test_rows = load_rows(a.test, a.test_limit or a.limit)
    tr_x, tr_y = texts_labels(train_rows)
    te_x, te_y = texts_labels(test_rows)
    labels = sorted(set(tr_y))
    lid = {l: i for i, l in enumerate(labels)}
    tr_ids = [lid[l] for l in tr_y]
    te_ids = [lid.get(l, -1) for l in te_y]
    model, tok = build_cls(a.model, labels, a.seed)
    model.train()
    opt = make_opt(model, a.lr)
    per_epoch = math.ceil(len(tr_x) / a.batch)
    total = per_epoch * a.epochs
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=0, num_training_steps=total)
    enc_all = tok(tr_x, truncation=True, max_length=a.max_length)  # token ids, unpadded
    gen = torch.Generator().manual_seed(a.seed)
    accs, losses, step_s, eval_s = [], [], [], []
    train_s = 0.0
    for ep in range(a.epochs):
        perm = torch.randperm(len(tr_x), generator=gen).tolist()
        t_ep = time.perf_counter()
        ep_loss = 0.0
        for b in range(per_epoch):
            idx = perm[b * a.batch:(b + 1) * a.batch]
            feats = [{k: enc_all[k][i] for k in enc_all.keys()} for i in idx]
            batch = tok.pad(feats, padding="longest", return_tensors="pt")
            y = torch.tensor([tr_ids[i] for i in idx])
            t0 = time.perf_counter()
            out = model(**batch, labels=y)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step_s.append(time.perf_counter() - t0)
            ep_loss += float(out.loss.detach())
        train_s += time.perf_counter() - t_ep
        losses.append(ep_loss / per_epoch)
        t0 = time.perf_counter()
        accs.append(accuracy(model, tok, te_x, te_ids, a.max_length))
        eval_s.append(time.perf_counter() - t0)
        log(f"finetune: epoch {ep + 1}/{a.epochs} loss {losses[-1]:.4f} acc {accs[-1]:.4f} "
            f"train {train_s:.1f}s eval {eval_s[-1]:.1f}s")
    emit({"peer": "torch_finetune", "threads": a.threads, "n_train": len(tr_x), "n_test": len(te_x),
          "epochs": a.epochs, "lr": a.lr, "batch": a.batch, "max_length": a.max_length, "seed": a.seed,
          "accuracy_per_epoch": accs, "accuracy": accs[-1] if accs else None, "train_loss_per_epoch": losses,
          "train_seconds": train_s, "eval_seconds": eval_s, "steps": len(step_s),
          "seconds_per_step_median": statistics.median(step_s), "seconds_per_step_min": min(step_s),
          "versions": versions()})


# ---------------------------------------------------------------------------------------------- steptime
def cmd_steptime(a):
    import torch

    set_threads(a.threads)
    tr_x, tr_y = texts_labels(load_rows(a.train, a.batch))
    labels = sorted(set(texts_labels(load_rows(a.train, a.limit))[1]))
    lid = {l: i for i, l in enumerate(labels)}
    model, tok = build_cls(a.model, labels, a.seed)
    model.train()
    opt = make_opt(model, a.lr)
    batch = tok(tr_x, padding="max_length", truncation=True, max_length=a.length, return_tensors="pt")
    y = torch.tensor([lid[l] for l in tr_y])
    secs = []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        out = model(**batch, labels=y)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if s >= a.warmup:
            secs.append(dt)
        log(f"steptime: step {s + 1}/{a.warmup + a.steps} {dt:.3f}s{' (warm-up)' if s < a.warmup else ''}")
    emit({"peer": "torch_steptime", "threads": a.threads, "batch": a.batch, "length": a.length,
          "steps": a.steps, "warmup": a.warmup, "seconds_per_step_min": min(secs),
          "seconds_per_step_median": statistics.median(secs), "seconds_per_step": secs,
          "texts_per_s_median": a.batch / statistics.median(secs), "versions": versions()})


# ---------------------------------------------------------------------------------------------- setfit
def cmd_setfit(a):
    import numpy as np
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.linear_model import LogisticRegression

    set_threads(a.threads)
    tr_x, tr_y = texts_labels(load_rows(a.sample, a.limit))
    te_x, te_y = texts_labels(load_rows(a.test, a.test_limit or a.limit))
    labels = sorted(set(tr_y))
    lid = {l: i for i, l in enumerate(labels)}
    model = SetFitModel(model_body=build_st(a.model), model_head=LogisticRegression(), labels=labels)
    with tempfile.TemporaryDirectory() as td:
        args = TrainingArguments(output_dir=td, batch_size=a.batch, num_epochs=a.epochs,
                                 num_iterations=a.num_iterations, seed=a.seed, report_to="none",
                                 save_strategy="no", show_progress_bar=False)
        ds = Dataset.from_dict({"text": tr_x, "label": [lid[l] for l in tr_y]})
        trainer = Trainer(model=model, args=args, train_dataset=ds)
        t0 = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = model.predict(te_x, batch_size=64, as_numpy=True, use_labels=False)
    pred_s = time.perf_counter() - t0
    gold = np.array([lid.get(l, -1) for l in te_y])
    acc = float(np.mean(np.asarray(pred).astype(int) == gold))
    n_pairs = 2 * a.num_iterations * len(tr_x)
    emit({"peer": "setfit", "threads": a.threads, "n_train": len(tr_x), "n_test": len(te_x), "accuracy": acc,
          "train_seconds": train_s, "predict_seconds": pred_s, "seed": a.seed,
          "setfit_args": {"num_iterations": a.num_iterations, "num_epochs": a.epochs, "batch_size": a.batch,
                          "pairs": n_pairs, "steps": math.ceil(n_pairs / a.batch),
                          "api": "setfit.TrainingArguments(num_iterations=...) + setfit.Trainer",
                          "loss": "CosineSimilarityLoss", "head": "LogisticRegression()"},
          "versions": versions()})


def main():
    ap = argparse.ArgumentParser(description="bench/encoder peers (see module docstring)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, threads=1):
        p.add_argument("--model", default=DEFAULT_MODEL)
        p.add_argument("--threads", type=int, default=threads)
        p.add_argument("--limit", type=int, default=None, help="first N lines of each input (smoke tests)")
        p.add_argument("--test-limit", type=int, default=None, help="first N test lines (default: --limit)")

    p = sub.add_parser("sample")
    p.add_argument("--train", required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=int, default=None)

    p = sub.add_parser("frozen")
    common(p)
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--batch", type=int, default=64)

    p = sub.add_parser("frozen_lr")
    common(p)
    p.add_argument("--sample", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--batch", type=int, default=64)

    p = sub.add_parser("finetune")
    common(p)
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("steptime")
    common(p)
    default_train = os.path.join(os.environ.get("HONE_SHARED", os.path.join(HERE, "..", "..", "..", "shared")),
                                 "datasets", "banking77", "train.jsonl")
    p.add_argument("--train", default=default_train)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("setfit")
    common(p, threads=2)
    p.add_argument("--sample", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-iterations", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=16)

    a = ap.parse_args()
    with contextlib.redirect_stdout(sys.stderr):  # trainers print their log dicts on stdout
        {"sample": cmd_sample, "frozen": cmd_frozen, "frozen_lr": cmd_frozen_lr, "finetune": cmd_finetune,
         "steptime": cmd_steptime, "setfit": cmd_setfit}[a.cmd](a)


if __name__ == "__main__":
    main()
