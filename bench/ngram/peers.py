"""bench/ngram peers: scikit-learn TF-IDF (word 1-2 + char_wb 2-5, sublinear_tf) + LinearSVC, and fastText.

One repetition per invocation (run.sh interleaves hone and the peers); prints one JSON object with
accuracy, macro_f1, train_seconds, predict_texts_per_s (batch form, whole test set) and single-text
latency p50/p95 in microseconds.

usage: peers.py --peer svc|fasttext --train F --test F [--work DIR] [--threads N]
"""
import argparse
import json
import os
import statistics
import tempfile
import time


def load(path):
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                texts.append(str(r["text"]))
                labels.append(str(r["label"]))
    return texts, labels


def macro_f1(gold, pred):
    labels = sorted(set(gold))
    f1s = []
    for c in labels:
        tp = sum(1 for g, p in zip(gold, pred) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold, pred) if g == c and p != c)
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s)


def latency(fn, texts, n=1000):
    sample = texts[:n]
    fn(sample[0])  # warm up
    us = []
    for t in sample:
        t0 = time.perf_counter()
        fn(t)
        us.append((time.perf_counter() - t0) * 1e6)
    us.sort()
    return us[len(us) // 2], us[min(len(us) - 1, int(len(us) * 0.95))]


def run_svc(tr_x, tr_y, te_x):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.svm import LinearSVC

    t0 = time.perf_counter()
    pipe = make_pipeline(
        FeatureUnion([
            ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
        ]),
        LinearSVC(),
    )
    pipe.fit(tr_x, tr_y)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = list(pipe.predict(te_x))
    passes = 1
    while time.perf_counter() - t0 < 0.3:
        pipe.predict(te_x)
        passes += 1
    pred_s = (time.perf_counter() - t0) / passes
    p50, p95 = latency(lambda t: pipe.predict([t]), te_x, n=300)
    return pred, train_s, pred_s, p50, p95, "sklearn TF-IDF(word 1-2 + char_wb 2-5, sublinear_tf) + LinearSVC()"


def run_fasttext(tr_x, tr_y, te_x, work, threads):
    import fasttext

    clean = lambda t: " ".join(t.split())  # fastText reads one example per line
    os.makedirs(work, exist_ok=True)
    fd, path = tempfile.mkstemp(suffix=".txt", dir=work)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for x, y in zip(tr_x, tr_y):
            f.write(f"__label__{y.replace(' ', '_')} {clean(x)}\n")
    try:
        t0 = time.perf_counter()
        model = fasttext.train_supervised(input=path, wordNgrams=2, epoch=50, thread=threads, verbose=0)
        train_s = time.perf_counter() - t0
    finally:
        os.unlink(path)
    te_clean = [clean(t) for t in te_x]
    # Repeat whole-test-set passes for at least 0.3 s, as hone's driver does.
    t0 = time.perf_counter()
    labels, _ = model.predict(te_clean)
    passes = 1
    while time.perf_counter() - t0 < 0.3:
        model.predict(te_clean)
        passes += 1
    pred_s = (time.perf_counter() - t0) / passes
    back = {y.replace(" ", "_"): y for y in set(tr_y)}
    pred = [back.get(l[0][len("__label__"):], "") for l in labels]
    # fasttext-wheel 0.9.2's single-string predict breaks on numpy 2 (np.array(copy=False)); the
    # one-element list form takes the same C++ path without that conversion.
    p50, p95 = latency(lambda t: model.predict([t]), te_clean)
    return pred, train_s, pred_s, p50, p95, f"fasttext-wheel train_supervised(wordNgrams=2, epoch=50, thread={threads})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", required=True, choices=["svc", "fasttext"])
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--work", default=tempfile.gettempdir())
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    tr_x, tr_y = load(a.train)
    te_x, te_y = load(a.test)
    if a.peer == "svc":
        pred, train_s, pred_s, p50, p95, desc = run_svc(tr_x, tr_y, te_x)
    else:
        pred, train_s, pred_s, p50, p95, desc = run_fasttext(tr_x, tr_y, te_x, a.work, a.threads)
    acc = sum(1 for g, p in zip(te_y, pred) if g == p) / len(te_y)
    print(json.dumps({
        "peer": a.peer,
        "desc": desc,
        "n_train": len(tr_x),
        "n_test": len(te_x),
        "accuracy": acc,
        "macro_f1": macro_f1(te_y, pred),
        "train_seconds": train_s,
        "predict_texts_per_s": len(te_x) / pred_s,
        "latency_us_p50": p50,
        "latency_us_p95": p95,
    }))


if __name__ == "__main__":
    main()
