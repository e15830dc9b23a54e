//! The grader conformance table: every grader type on at least 20 cases with the expected reward,
//! error cases typed, the text-similarity scores against the reference packages, grader files in
//! both formats, and the adversarial check on a lenient and a strict grader.

use hone_grade::adversarial::{Attack, probe};
use hone_grade::{GradeError, Grader, GraderSpec};
use serde_json::{Value, json};

fn grader(spec: Value) -> Grader {
    let s: GraderSpec =
        serde_json::from_value(spec.clone()).unwrap_or_else(|e| panic!("{spec}: {e}"));
    Grader::new(&s).unwrap_or_else(|e| panic!("{spec}: {e}"))
}

/// (output, item, expected reward) for one grader.
fn check(spec: Value, cases: &[(&str, Value, f64)]) -> usize {
    let g = grader(spec.clone());
    for (out, item, want) in cases {
        let got = g
            .grade(out, item)
            .unwrap_or_else(|e| panic!("{spec} on {out:?}: {e}"));
        assert!(
            (got.reward - want).abs() < 1e-9,
            "{} on {out:?} / {item}: reward {} want {want}",
            g.name,
            got.reward
        );
        assert_eq!(got.passed, got.reward >= g.pass_threshold());
    }
    cases.len()
}

#[test]
fn string_check_conformance() {
    let item = json!({"answer": "Paris", "n": 42});
    let mut n = 0;
    let spec = |op: &str| json!({"type": "string_check", "name": format!("s_{op}"), "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}", "operation": op});
    n += check(
        spec("eq"),
        &[
            ("Paris", item.clone(), 1.0),
            ("paris", item.clone(), 0.0),
            ("Paris ", item.clone(), 0.0),
            ("", item.clone(), 0.0),
            ("The answer is Paris", item.clone(), 0.0),
        ],
    );
    n += check(
        spec("ne"),
        &[
            ("Paris", item.clone(), 0.0),
            ("London", item.clone(), 1.0),
            ("", item.clone(), 1.0),
            ("PARIS", item.clone(), 1.0),
        ],
    );
    // `like` is a case-sensitive substring test, `ilike` ignores case.
    n += check(
        spec("like"),
        &[
            ("The answer is Paris.", item.clone(), 1.0),
            ("the answer is paris", item.clone(), 0.0),
            ("Pari", item.clone(), 0.0),
            ("Parisian", item.clone(), 1.0),
            ("", item.clone(), 0.0),
        ],
    );
    n += check(
        spec("ilike"),
        &[
            ("the answer is paris", item.clone(), 1.0),
            ("PARIS!", item.clone(), 1.0),
            ("Pa ris", item.clone(), 0.0),
            ("", item.clone(), 0.0),
            ("ParIs", item.clone(), 1.0),
        ],
    );
    // Templates render numbers as text.
    n += check(
        json!({"type": "string_check", "name": "num", "reference": "{{ item.n }}", "operation": "eq"}),
        &[("42", item.clone(), 1.0), ("42.0", item.clone(), 0.0)],
    );
    assert!(n >= 20, "{n} cases");
}

#[derive(serde::Deserialize)]
struct SimPair {
    prediction: String,
    reference: String,
    bleu: f64,
    rouge_n: Vec<f64>,
    fuzzy_match: f64,
}

#[test]
fn text_similarity_matches_the_reference_packages() {
    let table: Value = serde_json::from_str(include_str!("data/similarity.json")).unwrap();
    let pairs: Vec<SimPair> = serde_json::from_value(table["pairs"].clone()).unwrap();
    assert!(pairs.len() >= 20);
    let metric = |m: &str| {
        grader(
            json!({"type": "text_similarity", "name": m, "reference": "{{ item.reference }}", "evaluation_metric": m, "pass_threshold": 0.5}),
        )
    };
    let bleu = metric("bleu");
    let fuzzy = metric("fuzzy_match");
    let rouge: Vec<Grader> = (1..=5).map(|n| metric(&format!("rouge_{n}"))).collect();
    for p in &pairs {
        let item = json!({"reference": p.reference});
        let close = |g: &Grader, want: f64| {
            let got = g.grade(&p.prediction, &item).unwrap();
            assert!(
                (got.reward - want).abs() < 1e-9,
                "{} {:?} vs {:?}: hone {} package {want}",
                g.name,
                p.prediction,
                p.reference,
                got.reward
            );
            assert_eq!(got.passed, got.reward >= 0.5);
        };
        close(&bleu, p.bleu);
        close(&fuzzy, p.fuzzy_match);
        for (g, want) in rouge.iter().zip(&p.rouge_n) {
            close(g, *want);
        }
    }
}

#[test]
fn numeric_conformance_with_tolerance_edges() {
    let item = json!({"answer": "#### 1,234", "price": "3.50"});
    let exact = json!({"type": "numeric", "name": "exact", "reference": "{{ item.answer }}"});
    let mut n = check(
        exact,
        &[
            ("The total is 1234.", item.clone(), 1.0),
            ("The total is 1,234.", item.clone(), 1.0),
            ("First 12, then 1234", item.clone(), 1.0),
            ("1234 at first, then 12", item.clone(), 0.0),
            ("about 1234.0001", item.clone(), 0.0),
            ("no number here", item.clone(), 0.0),
            ("", item.clone(), 0.0),
            ("-1234", item.clone(), 0.0),
            ("1.234e3", item.clone(), 1.0),
        ],
    );
    let first = json!({"type": "numeric", "name": "first", "reference": "{{ item.answer }}", "pick": "first"});
    n += check(
        first,
        &[
            ("1234 at first, then 12", item.clone(), 1.0),
            ("12 then 1234", item.clone(), 0.0),
        ],
    );
    // |x - ref| <= abs_tol + rel_tol * |ref|, inclusive at the edge.
    let abs =
        json!({"type": "numeric", "name": "abs", "reference": "{{ item.price }}", "abs_tol": 0.25});
    n += check(
        abs,
        &[
            ("3.75", item.clone(), 1.0),
            ("3.25", item.clone(), 1.0),
            ("3.76", item.clone(), 0.0),
            ("3.24", item.clone(), 0.0),
            ("$3.5", item.clone(), 1.0),
        ],
    );
    let rel = json!({"type": "numeric", "name": "rel", "reference": "{{ item.answer }}", "rel_tol": 0.01});
    n += check(
        rel,
        &[
            ("1246.34", item.clone(), 1.0),
            ("1221.66", item.clone(), 1.0),
            ("1247", item.clone(), 0.0),
            ("1221", item.clone(), 0.0),
        ],
    );
    assert!(n >= 20, "{n} cases");
    // A reference without a number is an error, never a score.
    let g = grader(json!({"type": "numeric", "name": "bad_ref", "reference": "{{ item.text }}"}));
    let e = g.grade("5", &json!({"text": "none"})).unwrap_err();
    assert!(matches!(e, GradeError::Runtime { .. }), "{e}");
}

#[test]
fn regex_and_length_conformance() {
    let item = json!({});
    let refund = json!({"type": "regex", "name": "no_refund_promise", "pattern": r"\b(we will|we'll|you will) (refund|reimburse)|\$\d", "case_insensitive": true, "negate": true});
    let mut n = check(
        refund,
        &[
            ("I have passed your request to billing.", item.clone(), 1.0),
            ("We will refund you tomorrow.", item.clone(), 0.0),
            ("WE'LL REIMBURSE the fee", item.clone(), 0.0),
            ("That costs $5.", item.clone(), 0.0),
            ("", item.clone(), 1.0),
            ("Refunds are handled by billing.", item.clone(), 1.0),
        ],
    );
    let order = json!({"type": "regex", "name": "order", "pattern": r"#\d{4,}"});
    n += check(
        order,
        &[
            ("order #12345", item.clone(), 1.0),
            ("order #123", item.clone(), 0.0),
            ("", item.clone(), 0.0),
        ],
    );
    let len = json!({"type": "length", "name": "short", "max_words": 5, "min_words": 1});
    n += check(
        len,
        &[
            ("one two three four five", item.clone(), 1.0),
            ("one two three four five six", item.clone(), 0.0),
            ("", item.clone(), 0.0),
            ("  spaced   out\n\twords ", item.clone(), 1.0),
            ("one", item.clone(), 1.0),
        ],
    );
    let chars = json!({"type": "length", "name": "chars", "max_chars": 5});
    n += check(
        chars,
        &[
            ("héllo", item.clone(), 1.0),
            ("hello!", item.clone(), 0.0),
            ("", item.clone(), 1.0),
        ],
    );
    let ends = json!({"type": "regex", "name": "offer", "pattern": r"(?i)(anything else|further (help|assistance)|let me know)[^.!?]*[.!?]?\s*$"});
    n += check(
        ends,
        &[
            (
                "Done. Is there anything else I can help with?",
                item.clone(),
                1.0,
            ),
            ("Let me know if you need anything. Bye", item.clone(), 0.0),
            ("Please let me know.", item.clone(), 1.0),
        ],
    );
    assert!(n >= 20, "{n} cases");
}

#[test]
fn json_schema_and_json_fields_conformance() {
    let item = json!({"order": "A-17", "qty": 3});
    let schema = json!({"type": "object", "required": ["order", "qty"], "properties": {"order": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}, "additionalProperties": false});
    let mut n = check(
        json!({"type": "json_schema", "name": "shape", "schema": schema}),
        &[
            (r#"{"order": "A-17", "qty": 3}"#, item.clone(), 1.0),
            (r#"  {"order": "x", "qty": 1}  "#, item.clone(), 1.0),
            (r#"{"order": "A-17"}"#, item.clone(), 0.0),
            (r#"{"order": "A-17", "qty": 0}"#, item.clone(), 0.0),
            (r#"{"order": "A-17", "qty": 2.5}"#, item.clone(), 0.0),
            (r#"{"order": 17, "qty": 3}"#, item.clone(), 0.0),
            (
                r#"{"order": "A-17", "qty": 3, "extra": 1}"#,
                item.clone(),
                0.0,
            ),
            (r#"{"order": "A-17", "qty": 3"#, item.clone(), 0.0),
            ("", item.clone(), 0.0),
            ("Sure! {\"order\": \"A-17\", \"qty\": 3}", item.clone(), 0.0),
            (r#"[{"order": "A-17", "qty": 3}]"#, item.clone(), 0.0),
        ],
    );
    // A schema given as a JSON string (TOML files) works the same.
    n += check(
        json!({"type": "json_schema", "name": "as_string", "schema": "{\"type\": \"array\"}"}),
        &[("[1, 2]", item.clone(), 1.0), ("{}", item.clone(), 0.0)],
    );
    let fields = json!({"type": "json_fields", "name": "fields", "fields": {
        "order": {"operation": "eq", "value": "{{ item.order }}"},
        "qty": {"operation": "number", "value": "{{ item.qty }}", "tolerance": 0},
        "note": {"operation": "exists"},
        "lines.0.sku": {"operation": "regex", "value": "^SKU-\\d+$"},
    }});
    n += check(
        fields,
        &[
            (
                r#"{"order": "A-17", "qty": 3, "note": null, "lines": [{"sku": "SKU-1"}]}"#,
                item.clone(),
                1.0,
            ),
            (
                r#"{"order": "A-17", "qty": "3", "note": "", "lines": [{"sku": "SKU-1"}]}"#,
                item.clone(),
                1.0,
            ),
            (
                r#"{"order": "A-18", "qty": 3, "note": "", "lines": [{"sku": "SKU-1"}]}"#,
                item.clone(),
                0.75,
            ),
            (
                r#"{"order": "A-17", "qty": 4, "lines": []}"#,
                item.clone(),
                0.25,
            ),
            (r#"{}"#, item.clone(), 0.0),
            ("not json", item.clone(), 0.0),
            (
                r#"{"order": "a-17", "qty": 3.0, "note": 1, "lines": [{"sku": "sku-1"}]}"#,
                item.clone(),
                0.5,
            ),
        ],
    );
    assert!(n >= 20, "{n} cases");
}

#[test]
fn multi_combines_sub_rewards_by_formula() {
    let spec = json!({"type": "multi", "name": "house_rules", "pass_threshold": 1.0,
        "graders": {
            "short": {"type": "length", "max_words": 8, "min_words": 1},
            "mentions": {"type": "string_check", "reference": "{{ item.order }}", "operation": "like"},
            "close": {"type": "text_similarity", "reference": "{{ item.reference }}", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.5},
        },
        "calculate_output": "short * mentions * min(1, close / 0.5)"});
    let item = json!({"order": "#123", "reference": "Order #123 ships today."});
    let g = grader(spec);
    let r = g.grade("Order #123 ships today.", &item).unwrap();
    assert_eq!((r.reward, r.passed), (1.0, true));
    assert_eq!(r.sub_rewards["short"], 1.0);
    assert_eq!(r.sub_rewards["close"], 1.0);
    let r = g.grade("Order #124 ships today.", &item).unwrap();
    assert_eq!((r.reward, r.passed), (0.0, false));
    let r = g
        .grade(
            "Your order #123 has shipped and will arrive soon, thanks",
            &item,
        )
        .unwrap();
    assert_eq!(r.sub_rewards["short"], 0.0);
    let mut n = 3;
    let formula = |f: &str| json!({"type": "multi", "name": "f", "graders": {"a": {"type": "length", "max_words": 2}, "b": {"type": "length", "max_words": 4}}, "calculate_output": f});
    for (f, want) in [
        ("a + b", 1.0),
        ("(a + b) / 2", 0.5),
        ("a ^ 2 + 2 * b", 2.0),
        ("max(a, b) - min(a, b)", 1.0),
        ("sqrt(4) * b", 2.0),
        ("abs(a - b)", 1.0),
        ("floor(0.5 + b) + ceil(a)", 1.0),
        ("exp(0) * b", 1.0),
        ("log(1) + b", 1.0),
        ("-a + b", 1.0),
        ("2 * b - 0.5", 1.5),
    ] {
        n += check(formula(f), &[("one two three", json!({}), want)]);
    }
    // Formula errors are typed and found when the grader is built.
    let build = |f: &str| Grader::new(&serde_json::from_value(formula(f)).unwrap()).unwrap_err();
    for (f, at) in [("a +", 3), ("a * (b", 6), ("2 ** a", 3), ("a # b", 2)] {
        match build(f) {
            GradeError::FormulaParse { at: got, .. } => assert_eq!(got, at, "{f}"),
            e => panic!("{f}: {e}"),
        }
        n += 1;
    }
    for f in ["a + c", "pow(a, 2)"] {
        let e = build(f);
        assert!(
            matches!(
                e,
                GradeError::InvalidVariable { .. } | GradeError::FormulaParse { .. }
            ),
            "{f}: {e}"
        );
        n += 1;
    }
    // Division by zero at run time is an error, not a reward.
    let e = grader(formula("1 / (b - 1)"))
        .grade("x", &json!({}))
        .unwrap_err();
    assert!(matches!(e, GradeError::Runtime { .. }), "{e}");
    assert!(n >= 20, "{n} cases");
}

#[test]
fn template_errors_are_typed() {
    // A variable outside item/sample is refused when the grader is built.
    let e = Grader::new(&serde_json::from_value(json!({"type": "string_check", "name": "x", "reference": "{{ answer }}", "operation": "eq"})).unwrap()).unwrap_err();
    assert!(matches!(e, GradeError::InvalidVariable { .. }), "{e}");
    // A missing item field fails at grading time with the grader named; `item_fields` lets a
    // caller check a dataset's fields beforehand.
    let g = grader(
        json!({"type": "string_check", "name": "x", "reference": "{{ item.answer }}", "operation": "eq"}),
    );
    assert_eq!(g.item_fields().into_iter().collect::<Vec<_>>(), ["answer"]);
    let e = g.grade("a", &json!({"other": 1})).unwrap_err();
    assert!(matches!(e, GradeError::InvalidVariable { .. }), "{e}");
    assert!(e.to_string().contains("grader `x`"), "{e}");
    // Reading sample.output_json from an answer that is not JSON is a sample-parse error.
    let g = grader(
        json!({"type": "string_check", "name": "j", "input": "{{ sample.output_json.order }}", "reference": "{{ item.order }}", "operation": "eq"}),
    );
    assert_eq!(
        g.grade(r#"{"order": "A-1"}"#, &json!({"order": "A-1"}))
            .unwrap()
            .reward,
        1.0
    );
    let e = g.grade("A-1", &json!({"order": "A-1"})).unwrap_err();
    assert!(matches!(e, GradeError::SampleParse { .. }), "{e}");
    // Bad patterns, schemas, thresholds and unsupported metrics are spec errors.
    for spec in [
        json!({"type": "regex", "name": "r", "pattern": "(unclosed"}),
        json!({"type": "json_schema", "name": "s", "schema": {"type": "no-such-type"}}),
        json!({"type": "text_similarity", "name": "t", "reference": "x", "evaluation_metric": "bleu", "pass_threshold": 2}),
        json!({"type": "text_similarity", "name": "m", "reference": "x", "evaluation_metric": "meteor", "pass_threshold": 0.5}),
        json!({"type": "length", "name": "l"}),
        json!({"type": "numeric", "name": "n", "reference": "1", "abs_tol": -1}),
    ] {
        let e = Grader::new(&serde_json::from_value(spec.clone()).unwrap()).unwrap_err();
        assert!(matches!(e, GradeError::Spec { .. }), "{spec}: {e}");
    }
}

#[test]
fn grader_files_in_toml_and_openai_json() {
    let dir = std::env::temp_dir().join(format!("hone-grade-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("exact.toml"),
        "type = \"string_check\"\nreference = \"{{ item.answer }}\"\noperation = \"eq\"\n",
    )
    .unwrap();
    // OpenAI's JSON as it is: a multi grader with named sub-graders.
    std::fs::write(dir.join("openai.json"), r#"{"type": "multi", "name": "combined", "graders": {"s": {"type": "string_check", "name": "s", "input": "{{sample.output_text}}", "reference": "{{item.answer}}", "operation": "ilike"}, "t": {"type": "text_similarity", "name": "t", "input": "{{sample.output_text}}", "reference": "{{item.answer}}", "evaluation_metric": "rouge_l", "pass_threshold": 0.5}}, "calculate_output": "0.5 * s + 0.5 * t"}"#).unwrap();
    let specs = hone_grade::load::load_dir(&dir).unwrap();
    assert_eq!(
        specs.iter().map(|(_, s)| s.name()).collect::<Vec<_>>(),
        ["exact", "combined"]
    );
    let g = Grader::new(&specs[1].1).unwrap();
    assert_eq!(
        g.grade("paris", &json!({"answer": "Paris"}))
            .unwrap()
            .reward,
        1.0
    );
    // A typo names file, line and column.
    std::fs::write(
        dir.join("typo.toml"),
        "type = \"string_check\"\nreference = \"x\"\noperaton = \"eq\"\n",
    )
    .unwrap();
    let e = hone_grade::load::load_dir(&dir).unwrap_err();
    assert!(
        e.path.ends_with("typo.toml") && (e.line, e.col) == (3, 1),
        "{e}"
    );
    assert!(
        e.to_string().contains("operaton") || e.to_string().contains("operation"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_adversarial_check_flags_a_lenient_grader_and_passes_a_strict_one() {
    let items: Vec<Value> = [
        (
            "Where is order #48213?",
            "Your order #48213 shipped today. Anything else I can help with?",
        ),
        (
            "Cancel invoice INV-2291 please",
            "I have cancelled invoice INV-2291. Is there anything else I can help with?",
        ),
        (
            "I can't log in",
            "Please reset your password from the sign-in page. Anything else I can help with?",
        ),
    ]
    .iter()
    .map(|(p, r)| json!({"prompt": p, "reference": r}))
    .collect();
    // Lenient: a `like` check against the reference passes any answer that contains it, so a very
    // long answer that repeats the reference passes.
    let lenient = grader(
        json!({"type": "string_check", "name": "lenient", "reference": "{{ item.reference }}", "operation": "like"}),
    );
    let p = probe(&lenient, &items, "prompt", "reference");
    assert!(p.exploitable());
    let long = p
        .findings
        .iter()
        .find(|f| f.attack == Attack::Long)
        .unwrap();
    assert_eq!(long.passed, 3, "{p:?}");
    assert!(p.exploits()[0].contains("lenient"));
    // Lenient too: a threshold of 0 passes everything, the empty answer included.
    let weak_sim = grader(
        json!({"type": "text_similarity", "name": "weak", "reference": "{{ item.reference }}", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.0}),
    );
    assert!(
        probe(&weak_sim, &items, "prompt", "reference")
            .findings
            .iter()
            .any(|f| f.attack == Attack::Empty && f.passed == 3)
    );
    // Strict: short, similar to the reference, ends offering help.
    let strict = grader(json!({"type": "multi", "name": "strict", "graders": {
        "short": {"type": "length", "min_words": 3, "max_words": 40},
        "similar": {"type": "text_similarity", "reference": "{{ item.reference }}", "evaluation_metric": "rouge_l", "pass_threshold": 0.5},
        "offer": {"type": "regex", "pattern": "(?i)anything else"}},
        "calculate_output": "short * offer * min(1, similar / 0.5)"}));
    let p = probe(&strict, &items, "prompt", "reference");
    assert!(!p.exploitable(), "{:?}", p.exploits());
    assert!(p.findings.iter().all(|f| f.tried == 3 && f.errors == 0));
    // The real answers pass, so the check is not just a grader that fails everything.
    for it in &items {
        assert!(
            strict
                .grade(it["reference"].as_str().unwrap(), it)
                .unwrap()
                .passed
        );
    }
    // Format without content: short and offering help, as every reply should be. A generic reply
    // passes it on every item; the strict grader above (which also asks for the reference's
    // content) rejects the same reply.
    let format_only = grader(json!({"type": "multi", "name": "format_only", "graders": {
        "short": {"type": "length", "min_words": 3, "max_words": 40},
        "offer": {"type": "regex", "pattern": "(?i)anything else"}},
        "calculate_output": "short * offer"}));
    let p = probe(&format_only, &items, "prompt", "reference");
    let generic = p
        .findings
        .iter()
        .find(|f| f.attack == Attack::Generic)
        .unwrap();
    assert_eq!(generic.passed, 3, "{p:?}");
    assert!(
        p.exploits()
            .iter()
            .any(|l| l.contains("a generic reply that answers nothing")),
        "{:?}",
        p.exploits()
    );
    let strict_generic = probe(&strict, &items, "prompt", "reference");
    assert!(
        strict_generic
            .findings
            .iter()
            .any(|f| f.attack == Attack::Generic && f.tried == 3 && f.passed == 0)
    );
    // A schema grader: the schema itself as the answer is tried.
    let schema = grader(
        json!({"type": "json_schema", "name": "loose_schema", "schema": {"type": "object"}}),
    );
    let p = probe(&schema, &items, "prompt", "reference");
    assert!(
        p.findings
            .iter()
            .any(|f| f.attack == Attack::Schema && f.passed == 3)
    );
    // … also when the schema is written as a JSON string (TOML files).
    let schema = grader(
        json!({"type": "json_schema", "name": "string_schema", "schema": "{\"type\": \"object\"}"}),
    );
    let p = probe(&schema, &items, "prompt", "reference");
    assert!(
        p.findings
            .iter()
            .any(|f| f.attack == Attack::Schema && f.passed == 3),
        "{p:?}"
    );
    // A numeric grader on the order number: the long answer ends with a wrong number and fails;
    // echoing the prompt repeats the number and passes, which is the exploit to report. The third
    // reference has no number: an error on every attack, never a pass.
    let numeric = grader(
        json!({"type": "numeric", "name": "order_number", "reference": "{{ item.reference }}"}),
    );
    let p = probe(&numeric, &items, "prompt", "reference");
    let get = |a: Attack| p.findings.iter().find(|f| f.attack == a).unwrap();
    assert_eq!(get(Attack::Long).passed, 0, "{p:?}");
    assert_eq!(get(Attack::EchoPrompt).passed, 2, "{p:?}");
    assert_eq!(get(Attack::Empty).errors, 1, "{p:?}");
    assert!(
        p.exploits()[0].contains("(first: item 0)"),
        "{:?}",
        p.exploits()
    );
}

/// Letter counts, L2-normalised: a stand-in encoder with known cosines.
#[derive(Debug)]
struct Letters;

impl hone_grade::grader::Embedder for Letters {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        if texts.iter().any(|t| t.contains("BOOM")) {
            return Err("encoder exploded".into());
        }
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = [0f32; 26];
                for c in t.chars().filter(char::is_ascii_lowercase) {
                    v[(c as u8 - b'a') as usize] += 1.0;
                }
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter().map(|x| x / norm).collect()
            })
            .collect())
    }
}

#[test]
fn cosine_uses_the_supplied_encoder_and_refuses_without_one() {
    let spec: GraderSpec = serde_json::from_value(json!({"type": "text_similarity", "name": "on_topic", "reference": "{{ item.reference }}", "evaluation_metric": "cosine", "pass_threshold": 0.5, "encoder": "models/letters"})).unwrap();
    // Without an encoder the grader is refused when built, not scored as 0.
    assert!(matches!(Grader::new(&spec), Err(GradeError::Spec { .. })));
    let mut asked = Vec::new();
    let g = Grader::with_embedder(&spec, &mut |p| {
        asked.push(p.map(str::to_string));
        Ok(std::sync::Arc::new(Letters))
    })
    .unwrap();
    assert_eq!(asked, [Some("models/letters".to_string())]);
    let item = json!({"reference": "ab"});
    let cases = [
        ("ab", 1.0),
        ("ba", 1.0),
        ("cd", 0.0),
        ("a", std::f64::consts::FRAC_1_SQRT_2),
        ("aab", 3.0 / (5f64.sqrt() * 2f64.sqrt())),
    ];
    for (out, want) in cases {
        let r = g.grade(out, &item).unwrap();
        assert!(
            (r.reward - want).abs() < 1e-6,
            "{out}: {} want {want}",
            r.reward
        );
        assert_eq!(r.passed, r.reward >= 0.5);
    }
    // An encoder failure is a typed runtime error.
    assert!(matches!(
        g.grade("BOOM", &item),
        Err(GradeError::Runtime { .. })
    ));
    // Inside a multi grader the sub-grader gets the encoder too.
    let multi: GraderSpec = serde_json::from_value(
        json!({"type": "multi", "name": "m", "graders": {"t": spec}, "calculate_output": "t"}),
    )
    .unwrap();
    let g = Grader::with_embedder(&multi, &mut |_| Ok(std::sync::Arc::new(Letters))).unwrap();
    assert!((g.grade("ab", &item).unwrap().reward - 1.0).abs() < 1e-6);
}
