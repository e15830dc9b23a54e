"""Build the PII evaluation set for bench/pii_ner: real texts from ../shared (BANKING77 test, Bitext, SMS
Spam ham) with personal data inserted at seeded places, gold spans from the insertion offsets.

Built differently from any training generator hone has or will have: the carrier texts are real
messages, the insertion frames below are written for this set only, and the value lists are their own.
Never train or tune a detector on this set, or on Presidio's datasets and templates.
"""
import html, json, random, re, sys

datasets, out_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 400
rng = random.Random(20261130)

FIRST = ["Amelia", "Jonas", "Priya", "Mateo", "Chloé", "Oluwaseun", "Hiroshi", "Zofia", "Björn", "Aisha",
         "Lucas", "Mei", "Dmitri", "Fatima", "Connor", "Inès", "Kwame", "Sofía", "Rahul", "Elif", "Tomasz",
         "Naledi", "Giulia", "Sven", "Yusuf", "Hannah", "Thabo", "Léa", "Arjun", "Noor", "Emeka", "Freya",
         "Santiago", "Ingrid", "Kenji", "Mariana", "Olumide", "Ana", "Pedro", "Ayşe"]
LAST = ["Okafor", "Lindqvist", "Fernández", "Nakamura", "Kowalski", "Achterberg", "Mensah", "Dubois",
        "Chaudhry", "O'Sullivan", "Rossi", "Petrov", "Haddad", "Nguyen", "Schäfer", "Adeyemi", "Moreau",
        "Kaur", "Jansen", "Popescu", "Yilmaz", "Ferreira", "MacLeod", "Novak", "Osei", "Bergström",
        "Castillo", "Tanaka", "Van der Berg", "Al-Masri"]
STREETS = ["14 Larkspur Close", "221 Fenwick Road", "3 Rue des Tanneurs", "Hauptstraße 12", "88 Quay Street",
           "17 Millbrook Lane", "402 Harbor View Drive", "Calle Mayor 5", "9 Orchard Terrace", "61 Kingsway"]
CITIES = ["Leeds", "Lyon", "Rotterdam", "Porto", "Gdańsk", "Bristol", "Toulouse", "Cork", "Aarhus", "Valencia",
          "Leipzig", "Glasgow"]
COUNTRIES = ["Portugal", "Ireland", "Norway", "Kenya", "Canada", "Poland"]
ORGS = ["Brightwell Logistics", "Northpeak Insurance", "Harrow & Finch", "Tidewater Telecom",
        "Kestrel Analytics", "Oakridge Dental", "Meridian Freight", "Bluefen Studios"]

# Frames: (prefix, suffix) around a carrier text, each with slots; a slot is (type, values-picker).
def name():
    return rng.choice(FIRST) + " " + rng.choice(LAST)

FRAMES = [
    ("{P} here. ", "", ["PERSON"]),
    ("", " My name is {P}.", ["PERSON"]),
    ("This is {P} from accounts: ", "", ["PERSON"]),
    ("", " I already told {P} on the phone.", ["PERSON"]),
    ("My colleague {P} asked me to write. ", "", ["PERSON"]),
    ("", " Please send it to {A}, {C}.", ["ADDRESS", "LOCATION"]),
    ("I moved to {A} last month. ", "", ["ADDRESS"]),
    ("", " I am travelling in {N} right now.", ["LOCATION"]),
    ("I work for {O} and ", "", ["ORG"]),
    ("", " The card is for my son {F}.", ["PERSON"]),
    ("", " -- {P}, {O}", ["PERSON", "ORG"]),
    ("Writing on behalf of {P} ({O}). ", "", ["PERSON", "ORG"]),
    ("", "", []),  # no PII: false positives count here too
    ("", "", []),
]

def carriers():
    out = []
    for f, key in [("banking77/test.jsonl", "text"), ("bitext_customer_support/train.jsonl", "text"),
                   ("sms_spam/all.jsonl", "text")]:
        rows = [json.loads(l) for l in open(f"{datasets}/{f}")]
        if "sms" in f:
            rows = [r for r in rows if r.get("label") == "ham"]
        rng.shuffle(rows)
        # As hone's normaliser would leave them (entities decoded, spaces collapsed), so that spans
        # found in hone's masked output map back onto these texts exactly.
        texts = [re.sub(r"\s+", " ", html.unescape(r[key])).strip() for r in rows[: n]]
        out += [t for t in texts if 15 <= len(t) <= 160]
    rng.shuffle(out)
    return out

def fill(template, spans, offset_text):
    """Fill {P},{F},{A},{C},{N},{O} slots left to right; return text and spans relative to its start."""
    text = ""
    i = 0
    while i < len(template):
        if template[i] == "{" and template[i + 2] == "}":
            slot = template[i + 1]
            value, kind = {
                "P": (name, "PERSON"), "F": (lambda: rng.choice(FIRST), "PERSON"),
                "A": (lambda: rng.choice(STREETS), "ADDRESS"), "C": (lambda: rng.choice(CITIES), "LOCATION"),
                "N": (lambda: rng.choice(COUNTRIES), "LOCATION"), "O": (lambda: rng.choice(ORGS), "ORG"),
            }[slot]
            v = value()
            spans.append([kind, offset_text + len(text), offset_text + len(text) + len(v)])
            text += v
            i += 3
        else:
            text += template[i]
            i += 1
    return text

rows = []
for k, carrier in enumerate(carriers()[:n]):
    pre, suf, _ = FRAMES[k % len(FRAMES)]
    spans = []
    p = fill(pre, spans, 0)
    body = carrier
    s = fill(suf, spans, len(p) + len(body))
    rows.append({"id": f"eval-{k:04d}", "text": p + body + s, "spans": spans})
with open(out_path, "w") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
print(f"{len(rows)} sentences, {sum(len(r['spans']) for r in rows)} spans -> {out_path}", file=sys.stderr)
