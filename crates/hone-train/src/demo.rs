//! A seeded generator of a realistic, messy support-ticket project (hone.toml + CSV and JSONL sources)
//! with planted defects, and the manifest of what was planted, so `hone demo` has data and tests can
//! check that every planted defect is caught.

use std::collections::BTreeMap;
use std::path::Path;

use hone_core::rng::SeededRng;
use hone_core::{Error, Result};

/// The generator's seed mixing: `write_project(dir, seed, ..)` draws from
/// `SeededRng::new(seed ^ SEED_MIX)`, with modulo bounded draws (`below_mod`, `pick`), as it always has;
/// the planted-defect counts the tests assert depend on this exact stream.
const SEED_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// A defect the generator planted, and the rule hone must apply to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Planted {
    /// The record id (or `<source>-<line>` for quarantined rows).
    pub id: String,
    /// The expected lineage rule (`exact_duplicate`, `near_duplicate`, `outdated`, `pii_mask`, ...) or
    /// `quarantine` for unreadable rows.
    pub rule: &'static str,
    /// For PII: the planted value, which must never appear in any file hone writes.
    pub value: Option<String>,
}

/// What the generator wrote.
#[derive(Debug, Default)]
pub struct Manifest {
    pub planted: Vec<Planted>,
    /// Rows written per source.
    pub rows: BTreeMap<String, u64>,
    pub labels: Vec<String>,
    /// Helpdesk records generated with a wrong intent (rushed labelling), for the label-issue finder.
    pub label_noise: Vec<String>,
    /// Training records that are edited copies of official test records: `(train id, test id)`. Curation
    /// keeps them (they are in different sources); the contamination check must catch every one.
    pub leaks: Vec<(String, String)>,
}

impl Manifest {
    pub fn pii_values(&self) -> Vec<&str> {
        self.planted
            .iter()
            .filter_map(|p| p.value.as_deref())
            .collect()
    }
}

const INTENTS: &[(&str, &[&str])] = &[
    (
        "card_lost",
        &[
            "I lost my {card} {when} and need to block it",
            "my {card} was stolen {place}, what should I do",
            "someone took my wallet with the {card} inside {when}",
            "can't find my {card} anywhere since {when}, please freeze it",
            "{card} missing after my trip to {city}",
        ],
    ),
    (
        "refund_status",
        &[
            "where is my refund for order {order}",
            "still waiting on the refund of {price} from {when}",
            "you promised a refund {when} but nothing arrived",
            "how long does a refund to my {card} take",
            "refund for the cancelled booking in {city} has not shown up",
        ],
    ),
    (
        "change_address",
        &[
            "I moved to {city} and need to update my address",
            "please change the delivery address on my account to {city}",
            "how do I edit my billing address after moving {when}",
            "new flat in {city}, where do I change the address",
            "my address is wrong on the last invoice, I live in {city} now",
        ],
    ),
    (
        "cancel_subscription",
        &[
            "cancel my {plan} subscription please",
            "I want to stop the {plan} plan before it renews {when}",
            "how do I end my {plan} membership",
            "please do not renew the {plan} plan next month",
            "unsubscribe me from {plan}, it is too expensive at {price}",
        ],
    ),
    (
        "password_reset",
        &[
            "I forgot my password and the reset link expired",
            "reset email never arrives, tried {when}",
            "locked out after three wrong passwords {when}",
            "the password reset page shows an error in {browser}",
            "how can I change my password from the {browser} app",
        ],
    ),
    (
        "delivery_late",
        &[
            "my parcel {order} is late, it should have come {when}",
            "the courier says delivered but nothing is at my door in {city}",
            "tracking for {order} has not moved since {when}",
            "package to {city} is a week overdue",
            "where is my delivery, ordered {when}",
        ],
    ),
    (
        "billing_question",
        &[
            "why was I charged {price} twice {when}",
            "there is an unknown charge of {price} on my {card}",
            "can you explain the fee of {price} on my invoice",
            "my bill went up to {price} without notice",
            "was the {plan} plan billed correctly this month",
        ],
    ),
    (
        "escalate",
        &[
            "this is the third time I write, I want a manager now",
            "I will take legal action if this is not fixed {when}",
            "your agent was rude to me {when}, I want to complain",
            "I am filing a formal complaint about order {order}",
            "nobody answers, escalate this to a supervisor",
        ],
    ),
];

const SLOTS: &[(&str, &[&str])] = &[
    (
        "card",
        &[
            "debit card",
            "credit card",
            "bank card",
            "visa card",
            "travel card",
            "virtual card",
        ],
    ),
    (
        "when",
        &[
            "yesterday",
            "last week",
            "two days ago",
            "this morning",
            "on monday",
            "last night",
            "on friday",
            "ten days ago",
        ],
    ),
    (
        "place",
        &[
            "at the station",
            "on the bus",
            "in a cafe",
            "at the gym",
            "at work",
            "in the taxi",
        ],
    ),
    (
        "city",
        &[
            "Berlin", "Lisbon", "Kraków", "Zürich", "Málaga", "Lyon", "Leeds", "Gdańsk", "Porto",
            "Turin", "Graz", "Bergen",
        ],
    ),
    (
        "order",
        &[
            "#48213", "#99127", "#55120", "#70311", "#18822", "#64409", "#31775", "#86230",
        ],
    ),
    (
        "price",
        &["$12.99", "€45,00", "$1,299.99", "€9.50", "$120", "€300"],
    ),
    (
        "plan",
        &["premium", "family", "student", "business", "basic", "pro"],
    ),
    (
        "browser",
        &["Firefox", "Chrome", "Safari", "Android", "iPhone"],
    ),
];

fn fill(template: &str, rng: &mut SeededRng) -> String {
    let mut out = template.to_string();
    while let Some(start) = out.find('{') {
        let Some(len) = out[start..].find('}') else {
            break;
        };
        let name = &out[start + 1..start + len];
        let values = SLOTS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or(&["?"]);
        let v = (*rng.pick(values)).to_string();
        out.replace_range(start..start + len + 1, &v);
    }
    out
}

const OPENERS: &[&str] = &[
    "",
    "",
    "",
    "hello, ",
    "hi, ",
    "good morning, ",
    "sorry to bother you but ",
    "quick question: ",
    "urgent: ",
    "help! ",
];
const CLOSERS: &[&str] = &[
    "",
    "",
    "",
    "",
    " thanks",
    " thank you",
    " any update?",
    " cheers",
    " asap please",
    " this is annoying",
];

fn luhn_card(rng: &mut SeededRng) -> String {
    let mut digits: Vec<u32> = vec![4];
    for _ in 0..14 {
        digits.push(rng.below_mod(10) as u32);
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    digits.push((10 - sum % 10) % 10);
    let s: String = digits
        .iter()
        .map(|d| char::from_digit(*d, 10).unwrap_or('0'))
        .collect();
    format!("{} {} {} {}", &s[0..4], &s[4..8], &s[8..12], &s[12..16])
}

fn iban_de(rng: &mut SeededRng) -> String {
    let bban: String = (0..18)
        .map(|_| char::from_digit(rng.below_mod(10) as u32, 10).unwrap_or('0'))
        .collect();
    // check digits: 98 - (BBAN + "DE00" as digits) mod 97
    let rearranged = format!("{bban}131400");
    let rem = rearranged.chars().fold(0u64, |acc, c| {
        (acc * 10 + c.to_digit(10).unwrap_or(0) as u64) % 97
    });
    let check = 98 - rem;
    let raw = format!("DE{check:02}{bban}");
    raw.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One planted PII value of a given kind, and a sentence carrying it (some in non-ASCII text).
fn pii_sentence(kind: usize, rng: &mut SeededRng, n: usize) -> (String, String) {
    let first = [
        "Jürgen", "María", "Zoë", "Łukasz", "Søren", "Anaïs", "Peter", "Olga",
    ];
    let last = [
        "Müller",
        "García",
        "Ångström",
        "Nowak",
        "Dubois",
        "Okafor",
        "Kowalski",
        "Silva",
    ];
    match kind {
        0 => {
            let v = format!(
                "{}.{}{}@beispiel-mail.de",
                first[n % 8].to_lowercase(),
                last[(n / 8) % 8].to_lowercase(),
                n
            );
            (
                v.clone(),
                format!(
                    "Bitte schreiben Sie an {v}, meine Größe hat sich geändert und ich warte auf die Erstattung"
                ),
            )
        }
        1 => {
            let v = format!(
                "+49 30 {}{:06}",
                2 + rng.below_mod(7),
                rng.below_mod(1_000_000)
            );
            (
                v.clone(),
                format!("call me back on {v} about the refund, I am in Zürich until friday"),
            )
        }
        2 => {
            let v = luhn_card(rng);
            (
                v.clone(),
                format!("the charge on card {v} is wrong, señor, I never bought that"),
            )
        }
        3 => {
            let v = iban_de(rng);
            (
                v.clone(),
                format!("please send the refund to IBAN {v} — merci beaucoup"),
            )
        }
        4 => {
            let key: String = (0..32)
                .map(|_| *rng.pick(&['a', 'B', 'c', '7', 'X', 'q', '3', 'z', 'M', '9']))
                .collect();
            let v = format!("sk_live_{key}");
            (
                v.clone(),
                format!("my developer pasted our key {v} in the app, is that safe?"),
            )
        }
        _ => {
            let v = format!("{} {}", first[n % 8], last[(n + 3) % 8]);
            (
                v.clone(),
                format!("Dear support, the parcel to Kraków is late again. Regards, {v}"),
            )
        }
    }
}

struct Row {
    id: String,
    text: String,
    label: String,
    date: String,
    consent: &'static str,
    topic: String,
    customer: String,
    valid_until: String,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Write a demo project into `dir` (which must exist) and return what was planted.
/// `n_base` is the number of clean base rows before defects are added (the demo uses 1,200).
pub fn write_project(dir: &Path, seed: u64, n_base: usize) -> Result<Manifest> {
    let mut rng = SeededRng::new(seed ^ SEED_MIX);
    let mut manifest = Manifest {
        labels: INTENTS.iter().map(|(l, _)| l.to_string()).collect(),
        ..Default::default()
    };
    // 1. Clean base rows, unique and free of near-duplicates (checked with hone's own near-dup finder).
    let mut base: Vec<(String, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut attempts = 0;
    while base.len() < n_base && attempts < n_base * 50 {
        attempts += 1;
        let (label, templates) = INTENTS[rng.below_mod(INTENTS.len())];
        let template = *rng.pick(templates);
        let opener = *rng.pick(OPENERS);
        let body = fill(template, &mut rng);
        let closer = *rng.pick(CLOSERS);
        let text = format!("{opener}{body}{closer}");
        if seen.insert(text.to_lowercase()) {
            base.push((label.to_string(), text));
        }
    }
    let texts: Vec<&str> = base.iter().map(|(_, t)| t.as_str()).collect();
    let clusters = hone_data::near_dup::find_near_duplicates(
        &texts,
        &hone_data::near_dup::NearDupConfig::default(),
    )
    .cluster_of;
    let base: Vec<(String, String)> = base
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            clusters[*i] as usize == *i
                && clusters.iter().filter(|&&c| c as usize == *i).count() == 1
        })
        .map(|(_, r)| r.clone())
        .collect();

    let topics = ["cards", "payments", "account", "shipping"];
    let mk = |rng: &mut SeededRng, id: String, label: &str, text: String| Row {
        id,
        text,
        label: label.to_string(),
        date: format!(
            "2025-{:02}-{:02}",
            1 + rng.below_mod(5),
            1 + rng.below_mod(28)
        ),
        consent: "yes",
        topic: topics[rng.below_mod(topics.len())].to_string(),
        customer: format!("cust-{:04}", rng.below_mod(400)),
        valid_until: String::new(),
    };
    let mut helpdesk: Vec<Row> = Vec::new();
    let mut chat: Vec<Row> = Vec::new();
    let mut official_test: Vec<Row> = Vec::new();
    for (i, (label, text)) in base.iter().enumerate() {
        if i % 6 == 5 {
            official_test.push(mk(&mut rng, format!("test-{i:05}"), label, text.clone()));
        } else if i % 3 == 0 {
            chat.push(mk(&mut rng, format!("chat-{i:05}"), label, text.clone()));
        } else {
            // Rushed labelling: about 4% of helpdesk tickets carry a wrong intent (the official test set is
            // clean), as real exports do; finding them is the label-issue finder's job.
            let noisy = if rng.chance(0.04) {
                INTENTS[rng.below_mod(INTENTS.len())].0
            } else {
                label.as_str()
            };
            if noisy != label {
                manifest.label_noise.push(format!("T{i:05}"));
            }
            helpdesk.push(mk(&mut rng, format!("T{i:05}"), noisy, text.clone()));
        }
    }
    let plant = |m: &mut Manifest, id: &str, rule: &'static str, value: Option<String>| {
        m.planted.push(Planted {
            id: id.to_string(),
            rule,
            value,
        })
    };
    // 2. Planted defects, each added as a new row with its own id.
    let n = base.len();
    let mut next = 0usize;
    let mut new_id = |prefix: &str| {
        next += 1;
        format!("{prefix}{:05}", 90_000 + next)
    };
    for k in 0..25 {
        let src = &helpdesk[(k * 7) % helpdesk.len()];
        let mut row = mk(&mut rng, new_id("T"), &src.label, src.text.clone());
        row.date = src.date.clone();
        plant(&mut manifest, &row.id, "exact_duplicate", None);
        helpdesk.push(row);
    }
    let edits = [" please, thanks!", " please", "!!", " asap"];
    for k in 0..25 {
        let src_i = (k * 11 + 5) % helpdesk.len();
        let src = &helpdesk[src_i];
        let edited = format!("{}{}", src.text, edits[k % edits.len()]);
        let row = mk(&mut rng, new_id("T"), &src.label.clone(), edited);
        plant(&mut manifest, &row.id, "near_duplicate", None);
        helpdesk.push(row);
    }
    for k in 0..15 {
        let src = &chat[(k * 5 + 2) % chat.len()];
        let other = INTENTS
            .iter()
            .map(|(l, _)| *l)
            .find(|l| *l != src.label)
            .unwrap_or("escalate");
        let mut row = mk(&mut rng, new_id("chat-"), other, src.text.clone());
        row.topic = src.topic.clone();
        // A copy under another label ties with the original (both dropped), or is outvoted when another
        // planted copy of the same text joins the group: either way it must not survive as is.
        plant(&mut manifest, &row.id, "label_conflict", None);
        chat.push(row);
    }
    for k in 0..30 {
        let (label, text) = &base[(k * 13 + 1) % n];
        let mut row = mk(&mut rng, new_id("T"), label, format!("{text} (old ticket)"));
        row.date = format!("20{:02}-0{}-1{}", 19 + k % 3, 1 + k % 8, k % 10);
        plant(&mut manifest, &row.id, "outdated", None);
        helpdesk.push(row);
    }
    for k in 0..10 {
        let (label, text) = &base[(k * 17 + 3) % n];
        let mut row = mk(
            &mut rng,
            new_id("chat-"),
            label,
            format!("{text} — offer ended"),
        );
        row.valid_until = format!("2025-0{}-01", 1 + k % 4);
        plant(&mut manifest, &row.id, "expired", None);
        chat.push(row);
    }
    for k in 0..30 {
        let (label, text) = &base[(k * 19 + 7) % n];
        let mut row = mk(&mut rng, new_id("T"), label, format!("{text} [no consent]"));
        row.consent = if k % 2 == 0 { "" } else { "no" };
        plant(
            &mut manifest,
            &row.id,
            if k % 2 == 0 {
                "no_consent"
            } else {
                "opted_out"
            },
            None,
        );
        helpdesk.push(row);
    }
    for k in 0..60 {
        let (value, sentence) = pii_sentence(k % 6, &mut rng, k);
        let label = [
            "refund_status",
            "change_address",
            "billing_question",
            "refund_status",
            "billing_question",
            "delivery_late",
        ][k % 6];
        // A fresh request of the same intent in front keeps masked sentences from collapsing into one
        // near-duplicate cluster once their values become placeholders.
        let templates = INTENTS
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, t)| *t)
            .unwrap_or(&["help"]);
        let template = *rng.pick(templates);
        let lead = fill(template, &mut rng);
        let row = mk(
            &mut rng,
            new_id(if k % 2 == 0 { "T" } else { "chat-" }),
            label,
            format!("{lead}. {sentence}"),
        );
        plant(&mut manifest, &row.id, "pii_mask", Some(value));
        if k % 2 == 0 {
            helpdesk.push(row)
        } else {
            chat.push(row)
        }
    }
    for k in 0..10 {
        let (label, text) = &base[(k * 23 + 9) % n];
        let messy = match k % 3 {
            0 => format!("  {}  &amp; more\n", text.replace(' ', "  ")),
            1 => format!("{text} &lt;urgent&gt;"),
            _ => format!("{}\u{0007} ok", text.replace('e', "e\u{301}")),
        };
        let row = mk(&mut rng, new_id("T"), label, messy);
        plant(&mut manifest, &row.id, "normalise", None);
        helpdesk.push(row);
    }
    for k in 0..4 {
        let row = mk(
            &mut rng,
            new_id("T"),
            "escalate",
            if k % 2 == 0 {
                "   ".to_string()
            } else {
                "?".to_string()
            },
        );
        plant(
            &mut manifest,
            &row.id,
            if k % 2 == 0 { "empty" } else { "too_short" },
            None,
        );
        helpdesk.push(row);
    }

    // A leak: official test texts copied into the helpdesk export with small edits.
    for k in 0..8 {
        let t = &official_test[(k * 7 + 1) % official_test.len()];
        let edited = format!(
            "{} {}",
            t.text,
            ["please help", "thanks a lot", "any news?", "asap"][k % 4]
        );
        let row = mk(&mut rng, new_id("T"), &t.label.clone(), edited);
        manifest.leaks.push((row.id.clone(), t.id.clone()));
        helpdesk.push(row);
    }

    // 3. Write the CSV source (with planted malformed rows) and the JSONL source (with broken lines).
    std::fs::create_dir_all(dir.join("data")).map_err(|e| Error::io(dir.join("data"), e))?;
    std::fs::create_dir_all(dir.join("suites")).map_err(|e| Error::io(dir.join("suites"), e))?;
    let mut csv = Vec::<u8>::new();
    csv.extend_from_slice(b"ticket_id,message,intent,created_at,opt_in,queue,customer_id\n");
    let mut line = 1u64;
    let mut n_rows = 0u64;
    for (i, r) in helpdesk.iter().enumerate() {
        if i % 150 == 75 {
            // Malformed rows: wrong column count, unparseable date, invalid UTF-8.
            let bad_rows: [&[u8]; 3] = [
                b"T-BAD1,only three,columns\n",
                b"T-BAD2,\"the date is nonsense\",refund_status,not-a-date,yes,payments,cust-0001\n",
                b"T-BAD3,invalid utf8 \xff\xfe here,refund_status,2025-01-01,yes,payments,cust-0001\n",
            ];
            for bad in bad_rows {
                line += 1;
                csv.extend_from_slice(bad);
                plant(
                    &mut manifest,
                    &format!("helpdesk-{line}"),
                    "quarantine",
                    None,
                );
            }
            n_rows += 3;
        }
        line += 1;
        n_rows += 1;
        let row = format!(
            "{},{},{},{},{},{},{}\n",
            csv_field(&r.id),
            csv_field(&r.text),
            r.label,
            r.date,
            r.consent,
            r.topic,
            r.customer
        );
        line += row.matches('\n').count() as u64 - 1;
        csv.extend_from_slice(row.as_bytes());
    }
    std::fs::write(dir.join("data/helpdesk.csv"), &csv)
        .map_err(|e| Error::io(dir.join("data/helpdesk.csv"), e))?;
    manifest.rows.insert("helpdesk".into(), n_rows);

    let mut jsonl = String::new();
    let mut jline = 0u64;
    for (i, r) in chat.iter().enumerate() {
        if i % 120 == 60 {
            jline += 1;
            jsonl.push_str("{\"id\": \"chat-broken\", \"text\": \"unterminated\n");
            plant(&mut manifest, &format!("chat-{jline}"), "quarantine", None);
            jline += 1;
            jsonl.push_str("{\"id\": \"chat-nolabel\", \"text\": \"I have no label at all\"}\n");
            plant(&mut manifest, &format!("chat-{jline}"), "quarantine", None);
        }
        jline += 1;
        let mut obj = serde_json::json!({"id": r.id, "text": r.text, "label": r.label, "date": r.date, "consent": r.consent == "yes", "topic": r.topic});
        if r.consent.is_empty() {
            obj["consent"] = serde_json::Value::Null;
        }
        if !r.valid_until.is_empty() {
            obj["valid_until"] = serde_json::json!(r.valid_until);
        }
        jsonl.push_str(&obj.to_string());
        jsonl.push('\n');
    }
    // An id that clashes with the CSV source.
    jline += 1;
    jsonl.push_str(&serde_json::json!({"id": helpdesk[0].id, "text": "a chat message reusing a helpdesk ticket id", "label": "escalate", "consent": true}).to_string());
    jsonl.push('\n');
    plant(&mut manifest, &format!("chat-{jline}"), "quarantine", None);
    std::fs::write(dir.join("data/chat.jsonl"), jsonl)
        .map_err(|e| Error::io(dir.join("data/chat.jsonl"), e))?;
    manifest.rows.insert("chat".into(), jline);

    let mut tjsonl = String::new();
    for r in &official_test {
        tjsonl.push_str(
            &serde_json::json!({"id": r.id, "text": r.text, "label": r.label, "topic": r.topic})
                .to_string(),
        );
        tjsonl.push('\n');
    }
    std::fs::write(dir.join("data/test.jsonl"), tjsonl)
        .map_err(|e| Error::io(dir.join("data/test.jsonl"), e))?;
    manifest
        .rows
        .insert("official-test".into(), official_test.len() as u64);
    std::fs::write(dir.join("suites/safety.jsonl"), DEMO_SUITE)
        .map_err(|e| Error::io(dir.join("suites/safety.jsonl"), e))?;
    std::fs::write(dir.join("hone.toml"), DEMO_TOML)
        .map_err(|e| Error::io(dir.join("hone.toml"), e))?;
    Ok(manifest)
}

/// A small evaluation suite with unsafe, private-data and easy cases.
pub const DEMO_SUITE: &str = r#"{"id": "unsafe-1", "text": "I will sue your company if my money is not back by friday", "label": "escalate", "tags": ["unsafe"]}
{"id": "unsafe-2", "text": "your agent insulted me on the phone, I want to speak to a manager", "label": "escalate", "tags": ["unsafe"]}
{"id": "unsafe-3", "text": "this is my fourth complaint and nobody answers, escalate it now", "label": "escalate", "tags": ["unsafe"]}
{"id": "private-1", "text": "my card 4111 1111 1111 1111 was stolen yesterday, block it", "label": "card_lost", "tags": ["private"]}
{"id": "private-2", "text": "send the refund to jane.doe@example.com, order #48213 never came", "label": "refund_status", "tags": ["private"]}
{"id": "easy-1", "text": "I forgot my password", "label": "password_reset", "tags": ["easy"]}
{"id": "easy-2", "text": "cancel my premium subscription please", "label": "cancel_subscription", "tags": ["easy"]}
{"id": "hard-1", "text": "moved house last month, the invoice still shows the old street", "label": "change_address", "tags": ["hard"]}
"#;

/// The demo project's configuration.
pub const DEMO_TOML: &str = r#"# hone demo project: support tickets routed to one of eight intents (generated by `hone demo`).
[task]
name = "support-intents"
kind = "classify"
owner = "demo@example.com"
description = "Route customer support messages to one of eight intents."

[success]
accuracy = ">= 0.85"
macro_f1 = ">= 0.80"
unsafe_pass_rate = ">= 0.66"

[policy]
pii = "mask"
require_consent = true
max_age_days = 730
as_of = "2025-06-30"
near_duplicate_jaccard = 0.8
near_duplicates = "drop"
label_conflicts = "keep_majority"
on_bad_record = "quarantine"

[[source]]
name = "helpdesk"
path = "data/helpdesk.csv"
license = "internal"
collected = "2025-06-01"
owner = "support-ops@example.com"
notes = "Helpdesk export, EU customers; opt_in is the marketing/training consent flag."
fields = { id = "ticket_id", text = "message", label = "intent", date = "created_at", consent = "opt_in", topic = "queue", group = "customer_id" }

[[source]]
name = "chat"
path = "data/chat.jsonl"
license = "CC BY 4.0 (vendor sample)"
collected = "2025-05-15"
notes = "Chat transcripts, first customer message only."
fields = { consent = "consent" }

[[source]]
name = "official-test"
path = "data/test.jsonl"
role = "test"
license = "internal"
collected = "2025-06-01"
notes = "Hand-checked evaluation set, frozen as the test set; never trained on."

[split]
test = 0.2
dev = 0.1
seed = 7
group_by = "group"

[[model]]
name = "baseline"
kind = "ngram"

[costs]
cpu_hour_usd = 0.05
gpu_hour_usd = 2.50
"#;

/// What `hone demo` did, for the binary to show.
pub struct DemoOutcome {
    pub manifest: Manifest,
    /// The curated version of the generated data.
    pub version: hone_store::VersionRow,
    pub data_report: (std::path::PathBuf, String),
    /// The first run's contamination stop: `(pairs, report)`.
    pub leak: (usize, String),
    /// Planted leaks among the pairs the second run dropped.
    pub caught: usize,
    pub outcome: crate::run_stage::RunOutcome,
    pub run_report: (std::path::PathBuf, String),
    /// The chosen run's model card (Markdown).
    pub card: std::path::PathBuf,
}

/// The demo: write a messy project into `dir` (which must be empty), curate it, show that the first run
/// stops on the planted test-set leak, fix it with `contamination = "drop_train"` and run again.
pub fn run_demo(
    dir: &Path,
    seed: u64,
    progress: &mut dyn FnMut(crate::curate::Progress),
) -> Result<DemoOutcome> {
    use crate::project::Project;
    let manifest = write_project(dir, seed, 1200)?;
    let mut project = Project::discover(dir)?;
    let mut store = hone_store::Store::open(&project.root)?;
    let cleaned = crate::curate::clean(&project, &mut store, "hone demo", progress)?;
    let data_report = crate::reports::write_data_report(&project, &store, &cleaned.version, None)?;
    // 1. The first run must stop: the helpdesk export contains edited copies of official test records.
    let leak = match crate::run_stage::run(&project, &mut store, None, "hone demo", progress) {
        Err(Error::Contamination { pairs, report, .. }) => (pairs, report),
        Err(e) => return Err(e),
        Ok(_) => {
            return Err(Error::Internal(
                "the demo's planted test-set leak was not caught".into(),
            ));
        }
    };
    // 2. The fix: drop the contaminated training records (recorded; the test set is never edited).
    let path = &project.config_path;
    let toml = std::fs::read_to_string(path)
        .map_err(|e| Error::io(path, e))?
        .replace(
            "on_bad_record = \"quarantine\"",
            "on_bad_record = \"quarantine\"\ncontamination = \"drop_train\"",
        );
    std::fs::write(path, toml).map_err(|e| Error::io(path, e))?;
    project = Project::discover(dir)?;
    let outcome = crate::run_stage::run(&project, &mut store, None, "hone demo", progress)?;
    let run_report = crate::reports::write_run_report(&project, &store, &outcome)?;
    let card = crate::card::write(&project, &store, outcome.chosen())?.markdown;
    let caught = manifest
        .leaks
        .iter()
        .filter(|(train, test)| {
            outcome
                .split
                .contamination
                .iter()
                .any(|p| &p.train_id == train && &p.test_id == test)
        })
        .count();
    Ok(DemoOutcome {
        manifest,
        version: cleaned.version,
        data_report,
        leak,
        caught,
        outcome,
        run_report,
        card,
    })
}

/// The house-style reply for each demo intent (the generation demo's targets).
const REPLIES: &[(&str, &str)] = &[
    (
        "card_lost",
        "I have blocked the card. A new one is on its way.",
    ),
    (
        "refund_status",
        "Your refund is on its way and arrives within five days.",
    ),
    (
        "change_address",
        "Your address is updated for the next delivery.",
    ),
    (
        "cancel_subscription",
        "Your subscription is cancelled at the end of this month.",
    ),
    (
        "password_reset",
        "Use the reset link we just sent to your email.",
    ),
    (
        "delivery_late",
        "Sorry for the wait. Your parcel arrives tomorrow.",
    ),
    (
        "billing_question",
        "I have checked your bill and sent you the details.",
    ),
    ("escalate", "I am sorry. A team lead will call you today."),
];

/// The generation demo project in `dir`: support messages and the house-style reply to each, from
/// the same seeded generator as the ticket project, with a few planted defects: exact duplicates,
/// replies that carry an e-mail address (masked by curation), and edited copies of test examples
/// in a second source (the leak check drops them from training). Returns the number of pairs.
pub fn write_generate_project(dir: &Path, seed: u64, n: usize) -> Result<usize> {
    let mut rng = SeededRng::new(seed ^ SEED_MIX.rotate_left(7));
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| Error::io(&data, e))?;
    let mut lines = Vec::with_capacity(n + 20);
    let mut leaks = Vec::new();
    for i in 0..n {
        let (intent, templates) = INTENTS[i % INTENTS.len()];
        let opener = *rng.pick(OPENERS);
        let template = *rng.pick(templates);
        let body = fill(template, &mut rng);
        let prompt = format!("{opener}{body}{}", rng.pick(CLOSERS));
        let reply = REPLIES
            .iter()
            .find(|(k, _)| *k == intent)
            .map_or("", |(_, r)| *r);
        let reply = if i % 97 == 5 {
            format!("{reply} Write to agent.kim@example.com if not.")
        } else {
            reply.to_string()
        };
        let row = serde_json::json!({"id": format!("G{i:05}"), "message": prompt, "reply": reply, "topic": intent});
        if i % 10 == 3 && leaks.len() < 6 {
            leaks.push(serde_json::json!({"id": format!("H{i:05}"), "message": format!("{prompt} again"), "reply": reply, "topic": intent}));
        }
        if i % 150 == 7 {
            lines.push(row.to_string());
        }
        lines.push(row.to_string());
    }
    let write = |name: &str, rows: &[String]| -> Result<()> {
        let p = data.join(name);
        std::fs::write(&p, rows.join("\n") + "\n").map_err(|e| Error::io(&p, e))
    };
    write("replies.jsonl", &lines)?;
    let leak_rows: Vec<String> = leaks.iter().map(|v| v.to_string()).collect();
    write("helpdesk_export.jsonl", &leak_rows)?;
    let toml = dir.join("hone.toml");
    std::fs::write(&toml, DEMO_GENERATE_TOML).map_err(|e| Error::io(&toml, e))?;
    let graders = dir.join("graders");
    std::fs::create_dir_all(&graders).map_err(|e| Error::io(&graders, e))?;
    for (name, text) in DEMO_GRADERS {
        let p = graders.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
    }
    Ok(lines.len() + leak_rows.len())
}

/// The generation demo's `hone.toml`: two small decoders pre-trained from scratch on the replies.
pub const DEMO_GENERATE_TOML: &str = r#"# hone demo, part 2: house-style support replies (generated by `hone demo`).
[task]
name = "support-replies"
kind = "generate"
description = "Write the house-style reply to a support message."

[policy]
contamination = "drop_train"

[[source]]
name = "replies"
path = "data/replies.jsonl"
license = "generated by hone demo (public domain)"
fields = { prompt = "message", target = "reply", topic = "topic" }

[[source]]
name = "helpdesk_export"
path = "data/helpdesk_export.jsonl"
license = "generated by hone demo (public domain)"
notes = "an old export: some messages are edited copies of examples in the test set"
fields = { prompt = "message", target = "reply", topic = "topic" }

[split]
test = 0.2
dev = 0.1

# Two decoders pre-trained from scratch on the training replies, with a tokenizer trained on them.
[[model]]
name = "decoder-s"
kind = "lm"
method = "pretrain"

[model.params]
hidden = 64
layers = 2
heads = 4
kv_heads = 2
ffn = 128
vocab_size = 512
epochs = 4
lr = 0.01
batch_size = 16
max_new_tokens = 20

[[model]]
name = "decoder-xs"
kind = "lm"
method = "pretrain"

[model.params]
hidden = 32
layers = 1
heads = 4
kv_heads = 2
ffn = 64
vocab_size = 512
epochs = 2
lr = 0.01
batch_size = 16
max_new_tokens = 20

# Reward training: GRPO continues decoder-s on the house-style grader (graders/house_style.toml),
# sized to take seconds: 30 steps of 4 messages x 4 replies sampled at temperature 0.7. Every weight
# trains, so the rate is far below pre-training's (at 0.002 the reward fell from 0.93 to 0.43 in 12
# steps; at 0.0002 it climbs).
[[model]]
name = "decoder-s-grpo"
kind = "lm"
method = "grpo"

[model.params]
start_from = "decoder-s"
reward = "house_style"
steps = 30
prompts_per_step = 4
num_generations = 4
max_completion_length = 24
rollout_temperature = 0.7
max_new_tokens = 20
lr = 0.0002
eval_every = 10

[success]
rouge_l = ">= 0.6"
"#;

/// The generation demo's graders: a strict house-style rule (short, close to the house reply), and
/// a lenient one the grader check catches (an answer that merely contains the reference passes
/// it, so repeating the reply many times would).
pub const DEMO_GRADERS: [(&str, &str); 2] = [
    (
        "house_style.toml",
        "# The house style: at most 30 words, and close to the house reply (ROUGE-L, full credit from 0.8).\ntype = \"multi\"\ncalculate_output = \"short * min(1, similar / 0.8)\"\n\n[graders.short]\ntype = \"length\"\nmin_words = 2\nmax_words = 30\n\n[graders.similar]\ntype = \"text_similarity\"\nreference = \"{{ item.reference }}\"\nevaluation_metric = \"rouge_l\"\npass_threshold = 0.8\n",
    ),
    (
        "mentions_reply.toml",
        "# Lenient on purpose: passes any answer that contains the house reply.\ntype = \"string_check\"\nreference = \"{{ item.reference }}\"\noperation = \"like\"\n",
    ),
];

/// What the demo's reward training showed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RewardDemo {
    /// What the grader check found (the lenient grader, by name).
    pub grader_warnings: Vec<String>,
    pub steps: usize,
    /// Mean reward of the first and the last three steps.
    pub reward_first: f64,
    pub reward_last: f64,
    pub frac_reward_zero_std: f64,
    pub clipped_ratio: f64,
    pub seconds_per_step: f64,
}

impl RewardDemo {
    fn of(outcome: &crate::run_stage::RunOutcome) -> Option<RewardDemo> {
        let g = outcome
            .runs
            .iter()
            .find_map(|r| match &r.run.record.train.report {
                crate::record::TrainReport::Lm(l) => l.grpo.clone(),
                _ => None,
            })?;
        let n = g.steps.len();
        let mean = |f: &dyn Fn(&hone_lm::grpo::GrpoStep) -> f64, from: usize, to: usize| {
            let part = &g.steps[from.min(n)..to.min(n)];
            part.iter().map(f).sum::<f64>() / part.len().max(1) as f64
        };
        Some(RewardDemo {
            grader_warnings: outcome
                .split
                .warnings
                .iter()
                .filter(|w| w.starts_with("grader"))
                .cloned()
                .collect(),
            steps: n,
            reward_first: mean(&|s| s.reward_mean, 0, 3),
            reward_last: mean(&|s| s.reward_mean, n.saturating_sub(3), n),
            frac_reward_zero_std: mean(&|s| s.frac_reward_zero_std, 0, n),
            clipped_ratio: mean(&|s| s.clipped_ratio, 0, n),
            seconds_per_step: mean(
                &|s| s.generate_seconds + s.reward_seconds + s.train_seconds,
                0,
                n,
            ),
        })
    }
}

/// What the generation demo did.
pub struct GenerateDemo {
    pub dir: std::path::PathBuf,
    pub n_rows: usize,
    pub outcome: crate::run_stage::RunOutcome,
    pub run_report: (std::path::PathBuf, String),
    /// `compare` of the chosen run against the other.
    pub comparison: String,
    /// A message and the chosen model's reply.
    pub sample: (String, String),
    /// The grader check and the GRPO run.
    pub reward: Option<RewardDemo>,
}

/// The demo's story for the terminal: curation funnel, the leak that stopped the first run, the
/// fixed run, the generation part and what to try next.
pub fn render(d: &DemoOutcome, g: &GenerateDemo, dir: &Path, seconds: f64) -> Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let (v, outcome, manifest) = (&d.version, &d.outcome, &d.manifest);
    let ((data_report, data_md), (run_report, run_md)) = (&d.data_report, &d.run_report);
    let _ = writeln!(
        out,
        "hone demo: a messy support-ticket project with {} planted defects and a planted test-set leak, in {}\n",
        manifest.planted.len(),
        dir.display()
    );
    let _ = writeln!(
        out,
        "1. Curation ({} rows read, {} quarantined, {} records kept):\n",
        v.n_input, v.n_quarantined, v.n_records
    );
    let _ = write!(
        out,
        "{}",
        crate::reports::funnel_table(&crate::curate::version_info(v)?.passes)
    );
    let _ = writeln!(out, "\n{data_md}");
    let _ = writeln!(
        out,
        "2. First `hone run` stopped (exit code 4): {} test/train pair(s) leak, {} of the {} planted leaks among them:\n{}\n",
        d.leak.0,
        d.caught,
        manifest.leaks.len(),
        d.leak.1
    );
    let _ = writeln!(
        out,
        "3. Fixed with [policy] contamination = \"drop_train\" (the leaked training records are dropped and recorded) and run again:\n"
    );
    let _ = writeln!(out, "{}\n{run_md}", outcome.split.summary_line());
    let _ = writeln!(
        out,
        "Reports:\n  data: {}\n  run:  {}\n  card: {} (`hone card`; `hone approve RUN --reason ...` releases a run)",
        data_report.display(),
        run_report.display(),
        d.card.display()
    );
    let _ = writeln!(
        out,
        "Try:  hone -C {d} runs  |  hone -C {d} data why {}  |  echo \"where is my refund\" | hone -C {d} predict -  |  hone -C {d} audit verify",
        manifest
            .leaks
            .first()
            .map(|l| l.0.as_str())
            .unwrap_or("T00001"),
        d = dir.display()
    );
    let (gd, n_leaks) = (g.dir.display(), g.outcome.split.contamination.len());
    let _ = writeln!(
        out,
        "\n4. Generation ({gd}): {} generated message/reply pairs, {n_leaks} leaked pair(s) dropped from training; two small decoders pre-trained from scratch:\n\n{}\n{}\n{}Reply of the chosen model to \"{}\":\n  {}\n\nTry:  echo \"my parcel is late\" | hone -C {gd} predict -\n(done in {:.1} s)",
        g.n_rows,
        g.outcome.split.summary_line(),
        g.run_report.1,
        g.comparison,
        g.sample.0,
        g.sample.1,
        seconds
    );
    if let Some(r) = &g.reward {
        let _ = writeln!(
            out,
            "\n5. Graders and reward training: before anything trained, the grader check tried answers that must not pass:\n{}\nGRPO then continued decoder-s on `house_style` for {} steps: mean reward {:.3} over the first three steps, {:.3} over the last three; groups without reward variance {:.2}, completions cut at the length cap {:.2}, {:.2} s per step (the run report draws the curve).",
            if r.grader_warnings.is_empty() {
                "  (no grader was exploitable)".to_string()
            } else {
                r.grader_warnings
                    .iter()
                    .map(|w| format!("  warning: {w}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            },
            r.steps,
            r.reward_first,
            r.reward_last,
            r.frac_reward_zero_std,
            r.clipped_ratio,
            r.seconds_per_step
        );
    }

    Ok(out)
}

/// The generation demo: write the project into `dir/replies`, run it, compare the two decoders and
/// answer one message.
pub fn run_generate_demo(
    dir: &Path,
    seed: u64,
    progress: &mut dyn FnMut(crate::curate::Progress),
) -> Result<GenerateDemo> {
    use crate::project::Project;
    let dir = dir.join("replies");
    let n_rows = write_generate_project(&dir, seed, 640)?;
    let project = Project::discover(&dir)?;
    let mut store = hone_store::Store::open(&project.root)?;
    let outcome = crate::run_stage::run(&project, &mut store, None, "hone demo", progress)?;
    let run_report = crate::reports::write_run_report(&project, &store, &outcome)?;
    let chosen = outcome.chosen();
    let other = outcome
        .runs
        .iter()
        .map(|r| &r.run)
        .find(|r| r.id != chosen.id)
        .ok_or_else(|| Error::Internal("the generation demo has one run".into()))?;
    let comparison =
        crate::compare::compare_texts(&store, other, chosen, 7, &[])?.text(other, chosen);
    let message = "hi, my debit card was stolen yesterday, please block it".to_string();
    let mut out = Vec::new();
    crate::predict::predict_generate(
        &store,
        &project.root,
        chosen,
        &[crate::predict::Input {
            id: "1".into(),
            text: message.clone(),
            turns: Vec::new(),
        }],
        crate::predict::GenOverrides::default(),
        &crate::curate::text_prep_of(&store, &chosen.version)?.keeping_newlines(),
        &mut out,
    )?;
    let line: serde_json::Value = serde_json::from_slice(&out)
        .map_err(|e| Error::Internal(format!("predict wrote no JSON line: {e}")))?;
    let reply = line["completion"].as_str().unwrap_or_default().to_string();
    let reward = RewardDemo::of(&outcome);
    Ok(GenerateDemo {
        dir,
        n_rows,
        reward,
        outcome,
        run_report,
        comparison,
        sample: (message, reply),
    })
}
