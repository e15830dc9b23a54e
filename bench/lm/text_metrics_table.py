"""Writes crates/hone-eval/tests/data/text_metrics.json: ROUGE-L from the `rouge-score` package and
chrF from `sacrebleu` on hand-written (prediction, reference) pairs, per pair and pooled, so that
hone's own implementations are checked against the reference packages in every test run.

    python -m venv /tmp/mvenv && /tmp/mvenv/bin/pip install sacrebleu rouge-score
    /tmp/mvenv/bin/python bench/lm/text_metrics_table.py
"""
import json
import pathlib

import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.metrics import CHRF

PAIRS = [
    ("Your refund was sent today.", "We sent your refund today."),
    ("I can help you cancel your order.", "I'd be happy to help you cancel order #4412."),
    ("", "Thank you for reaching out."),
    ("Thank you for reaching out.", ""),
    ("", ""),
    ("!!!", "???"),
    ("The the the the", "the cat"),
    ("Café crème, s'il vous plaît", "cafe creme s'il vous plait"),
    ("Grüße aus Köln – bis bald!", "Grüße aus Koeln, bis bald"),
    ("Order 1234 arrived on 2024-05-01.", "Order 1243 arrived on 2024-05-01"),
    ("  leading and trailing   spaces  ", "leading and trailing spaces"),
    ("tabs\tand\nnewlines", "tabs and newlines"),
    ("a b c d e f g h i j", "j i h g f e d c b a"),
    ("To reset your password, click 'Forgot password' on the sign-in page and follow the e-mail.",
     "Please click 'Forgot password' on the sign-in page; we will e-mail you a reset link."),
    ("xyz", "abc"),
    ("ab", "abc"),
    ("日本語のテキスト", "日本語の文章"),
    ("emoji 🙂 test", "emoji test 🙂"),
    ("UPPER lower MiXeD", "upper LOWER mixed"),
    ("It's 5 o'clock; we're closed.", "Its 5 oclock, were closed"),
    ("The invoice is attached. Let me know if anything is missing.",
     "I have attached the invoice. Please let me know if something is missing."),
    ("yes", "yes"),
    ("no", "yes"),
    ("1 2 3", "1 2 3 4"),
    ("sep\x1cchar", "sep char"),
]


def main():
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    chrf = CHRF()
    rows = []
    for pred, ref in PAIRS:
        rows.append({
            "prediction": pred,
            "reference": ref,
            "rouge_l": scorer.score(ref, pred)["rougeL"].fmeasure,
            "chrf": chrf.sentence_score(pred, [ref]).score / 100.0,
        })
    corpus = chrf.corpus_score([p for p, _ in PAIRS], [[r for _, r in PAIRS]]).score / 100.0
    out = {
        "generator": "bench/lm/text_metrics_table.py",
        "sacrebleu": sacrebleu.__version__,
        "chrf_signature": str(chrf.get_signature()),
        "pairs": rows,
        "corpus_chrf": corpus,
    }
    path = pathlib.Path(__file__).resolve().parents[2] / "crates/hone-eval/tests/data/text_metrics.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path} ({len(rows)} pairs)")


if __name__ == "__main__":
    main()
