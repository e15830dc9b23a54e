"""Peer side of the label-issue benchmark (bench/defences/label_run.sh).

Reads the files label_bench wrote into --work (noisy.json: label names, clean and noisy labels, flipped
indices; oof.npy: hone's out-of-fold probabilities) and prints one JSON object with:
  cleanlab_on_hone_oof: cleanlab.filter.find_label_issues(noisy, hone OOF), default arguments;
  cleanlab_on_tfidf_lr: the same on scikit-learn TF-IDF (word 1-2, sublinear) + LogisticRegression(C=10)
    out-of-fold probabilities (cross_val_predict, 5 stratified folds), the published reference setup;
  tfidf_lr_accuracy: test accuracy of that LR trained on clean, noisy, noisy minus cleanlab's flags, and
    noisy with the flags relabelled to the LR's argmax (skipped with --no-accuracy).
"""
import argparse
import json
import time

import numpy as np
from cleanlab.filter import find_label_issues
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline


def load(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def pr(mask, flipped):
    hits = int(mask[flipped].sum())
    n = int(mask.sum())
    return {"flagged": n, "hits": hits, "precision": hits / max(n, 1), "recall": hits / max(int(flipped.sum()), 1)}


def lr():
    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                         LogisticRegression(C=10.0, max_iter=2000))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--no-accuracy", action="store_true")
    a = ap.parse_args()
    meta = json.load(open(f"{a.work}/noisy.json"))
    names = meta["label_names"]
    index = {n: i for i, n in enumerate(names)}
    train = load(a.train)
    texts = [r["text"] for r in train]
    clean = np.array(meta["clean"])
    noisy = np.array(meta["noisy"])
    flipped = np.zeros(len(noisy), bool)
    flipped[meta["flipped"]] = True
    out = {"cleanlab_version": __import__("cleanlab").__version__,
           "sklearn_version": __import__("sklearn").__version__}

    oof = np.load(f"{a.work}/oof.npy").astype(np.float64)
    oof /= oof.sum(axis=1, keepdims=True)
    t = time.perf_counter()
    m = find_label_issues(noisy, oof)
    out["cleanlab_on_hone_oof"] = {**pr(m, flipped), "seconds": time.perf_counter() - t}

    t = time.perf_counter()
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    lr_oof = cross_val_predict(lr(), texts, noisy, cv=cv, method="predict_proba")
    oof_s = time.perf_counter() - t
    t = time.perf_counter()
    m_lr = find_label_issues(noisy, lr_oof)
    out["cleanlab_on_tfidf_lr"] = {**pr(m_lr, flipped), "oof_seconds": oof_s,
                                   "find_seconds": time.perf_counter() - t}

    if not a.no_accuracy:
        test = load(a.test)
        tx = [r["text"] for r in test]
        ty = np.array([index.get(r["label"], -1) for r in test])

        def acc(x, y):
            return float((lr().fit(x, y).predict(tx) == ty).mean())

        keep = ~m_lr
        relabel = noisy.copy()
        relabel[m_lr] = lr_oof[m_lr].argmax(axis=1)
        t = time.perf_counter()
        out["tfidf_lr_accuracy"] = {
            "clean": acc(texts, clean),
            "noisy": acc(texts, noisy),
            "removed": acc([x for x, k in zip(texts, keep) if k], noisy[keep]),
            "relabelled": acc(texts, relabel),
        }
        out["tfidf_lr_accuracy"]["seconds"] = time.perf_counter() - t
    print(json.dumps(out))


if __name__ == "__main__":
    main()
