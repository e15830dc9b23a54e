"""Writes crates/hone-grade/tests/data/similarity.json: the `text_similarity` scores hone computes
itself, from the reference packages, on the pairs of bench/lm/text_metrics_table.py plus a few
more: sentence BLEU (`sacrebleu.sentence_bleu`, 13a, exp smoothing, effective order), ROUGE-1..5
(`rouge-score`, no stemmer) and fuzzy_match (`rapidfuzz.fuzz.ratio`), all divided into [0, 1].

    bench/.venv/bin/pip install sacrebleu rouge-score rapidfuzz
    bench/.venv/bin/python bench/reward/similarity_table.py
"""
import json
import pathlib
import sys

import rapidfuzz
import sacrebleu
from rapidfuzz import fuzz
from rouge_score import rouge_scorer

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "lm"))
from text_metrics_table import PAIRS  # noqa: E402

MORE = [
    ("The cat sat on the mat.", "The cat sat on the mat."),
    ("the cat", "The cat sat on the mat."),
    ("I understand your concern about order #12345 and I will check it.",
     "I understand you're worried about order #12345; let me check it for you."),
    ("Price: $3.50, tax-free (2024-05-01).", "Price: $3.50, tax free (2024-05-01)."),
    ("&quot;quoted&quot; &amp; escaped", "\"quoted\" & escaped"),
    ("well-known e-mail", "well known email"),
    ("a,b.c 1,000.5 x.", "a , b . c 1,000.5 x ."),
]


def main():
    names = [f"rouge{n}" for n in range(1, 6)]
    scorer = rouge_scorer.RougeScorer(names)
    rows = []
    for pred, ref in PAIRS + MORE:
        s = scorer.score(ref, pred)
        rows.append({
            "prediction": pred,
            "reference": ref,
            "bleu": sacrebleu.sentence_bleu(pred, [ref]).score / 100.0,
            "rouge_n": [s[n].fmeasure for n in names],
            "fuzzy_match": fuzz.ratio(pred, ref) / 100.0,
        })
    out = {
        "generator": "bench/reward/similarity_table.py",
        "sacrebleu": sacrebleu.__version__,
        "rapidfuzz": rapidfuzz.__version__,
        "pairs": rows,
    }
    path = ROOT / "crates" / "hone-grade" / "tests" / "data" / "similarity.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} pairs to {path}")


if __name__ == "__main__":
    main()
