"""Train the peer for bench/serve: scikit-learn TF-IDF (word 1-2 grams, sublinear tf) + LinearSVC on the
same BANKING77 training texts, saved as an MLflow model that `mlflow models serve` loads.

usage: mlflow_model.py TRAIN_JSONL TEST_JSONL OUT_DIR
"""
import json
import sys

import mlflow.sklearn
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

train, test, out = sys.argv[1:4]
rows = [json.loads(l) for l in open(train)]
df = pd.DataFrame({"text": [r["text"] for r in rows]})
y = [r["label"] for r in rows]
pipe = Pipeline([
    ("tfidf", ColumnTransformer([("t", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), "text")])),
    ("svm", LinearSVC(C=1.0)),
])
pipe.fit(df, y)
test_rows = [json.loads(l) for l in open(test)]
acc = sum(p == r["label"] for p, r in zip(pipe.predict(pd.DataFrame({"text": [r["text"] for r in test_rows]})), test_rows)) / len(test_rows)
mlflow.sklearn.save_model(pipe, out, input_example=df.head(2))
print(json.dumps({"peer_test_accuracy": acc, "n_train": len(rows)}))
