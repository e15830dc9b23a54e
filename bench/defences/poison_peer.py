"""Peer for bench/defences poison: scikit-learn TF-IDF (word 1-2, sublinear) + LogisticRegression on the
same poisoned training set poison_bench dumped, without defence and after dropping hone's suspects.
Prints one JSON object per seed: accuracy and attack success rate (ASR) for both."""
import argparse, json, time
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression


def load(path):
    return [json.loads(l) for l in open(path) if l.strip()]


def fit_eval(train, test, triggered, target):
    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x = vec.fit_transform([r["text"] for r in train])
    clf = LogisticRegression(C=10.0, max_iter=1000).fit(x, [r["label"] for r in train])
    secs = time.perf_counter() - t0
    pred = clf.predict(vec.transform([r["text"] for r in test]))
    acc = sum(p == r["label"] for p, r in zip(pred, test)) / len(test)
    pt = clf.predict(vec.transform([r["text"] for r in triggered]))
    asr = sum(p == target for p in pt) / max(1, len(pt))
    return {"accuracy": acc, "asr": asr, "train_s": secs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--seed", required=True)
    a = ap.parse_args()
    train = load(f"{a.dump}/seed{a.seed}_train.jsonl")
    triggered = load(f"{a.dump}/seed{a.seed}_triggered.jsonl")
    test = load(a.test)
    target = triggered[0]["label"] if triggered else None
    out = {"seed": int(a.seed), "peer": "sklearn TfidfVectorizer(1,2, sublinear) + LogisticRegression(C=10)",
           "no_defence": fit_eval(train, test, triggered, target),
           "defended": fit_eval([r for r in train if not r["flagged"]], test, triggered, target)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
