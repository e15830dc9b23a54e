//! A table of broken `hone.toml` files: each fails `Project::discover` (before any work) with
//! `Error::Config` at the offending key or value, and a hint ("did you mean" where a name is misspelt).
//! Also: a valid config with every model kind loads from a nested directory, and every relative path in it
//! resolves against the project root, not the process's working directory.

use std::path::Path;

use hone_core::Error;
use hone_train::models::{ModelKind, ModelSpec};
use hone_train::project::Project;

const BASE: &str = r#"[task]
name = "tickets"
kind = "classify"

[[source]]
name = "tickets"
path = "data/tickets.jsonl"
"#;

/// An `encoder` model over the fake model directory every test project has.
const ENCODER: &str = r#"
[[model]]
name = "enc"
kind = "encoder"
path = "models/tiny"
"#;

/// Writes a project with `toml` as its hone.toml, plus the data, an unlabelled text file and a (fake)
/// Hugging Face model directory that the paths in the cases refer to.
fn project(toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(
        root.join("data/tickets.jsonl"),
        "{\"id\": \"1\", \"text\": \"where is my refund\", \"label\": \"refund\"}\n{\"id\": \"2\", \"text\": \"card lost\", \"label\": \"card\"}\n",
    )
    .unwrap();
    std::fs::write(root.join("unlabelled.txt"), "my card is gone\n").unwrap();
    std::fs::create_dir_all(root.join("models")).unwrap();
    std::fs::write(root.join("models/tiny.gguf"), b"not read at load").unwrap();
    let model = root.join("models/tiny");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(
        model.join("config.json"),
        hone_encoder::testing::tiny_config_json(64).replace(
            "\"max_position_embeddings\": 64",
            "\"max_position_embeddings\": 512",
        ),
    )
    .unwrap();
    std::fs::write(model.join("tokenizer.json"), "{}").unwrap();
    std::fs::write(model.join("model.safetensors"), "").unwrap();
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("hone.toml"), toml).unwrap();
    dir
}

/// 1-based line and column of the `nth` (0-based) occurrence of `needle` in `text`.
fn position(text: &str, needle: &str, nth: usize) -> (usize, usize) {
    let offset = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("`{needle}` #{nth} not in:\n{text}"))
        .0;
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

struct Case {
    name: &'static str,
    toml: String,
    /// The error points at the start of this text (its `nth` occurrence).
    at: &'static str,
    nth: usize,
    /// The message contains this.
    message: &'static str,
    /// The hint contains this.
    hint: &'static str,
}

fn case(
    name: &'static str,
    toml: impl Into<String>,
    at: &'static str,
    message: &'static str,
    hint: &'static str,
) -> Case {
    Case {
        name,
        toml: toml.into(),
        at,
        nth: 0,
        message,
        hint,
    }
}

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn cases() -> Vec<Case> {
    vec![
        // --- model kinds and names ---
        case(
            "misspelt kind",
            with("\n[[model]]\nname = \"fast\"\nkind = \"ngarm\"\n"),
            "\"ngarm\"",
            "unknown model kind `ngarm`",
            "did you mean `ngram`?",
        ),
        case(
            "unknown kind",
            with("\n[[model]]\nname = \"big\"\nkind = \"transformer\"\n"),
            "\"transformer\"",
            "unknown model kind",
            "known kinds: ngram, encoder",
        ),
        case(
            "the majority baseline listed as a kind",
            with("\n[[model]]\nname = \"base\"\nkind = \"majority\"\n"),
            "\"majority\"",
            "built-in baseline",
            "runs beside every model",
        ),
        case(
            "the reserved name majority",
            with("\n[[model]]\nname = \"majority\"\nkind = \"ngram\"\n"),
            "\"majority\"",
            "reserved",
            "another name",
        ),
        Case {
            nth: 1,
            ..case(
                "duplicate model names",
                with(
                    "\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\n\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\n",
                ),
                "\"fast\"",
                "used twice",
                "its own name",
            )
        },
        case(
            "misspelt [[model]] key",
            with("\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\nabstian = true\n"),
            "abstian",
            "unknown field `abstian`",
            "did you mean `abstain`?",
        ),
        case(
            "wrong type at the [[model]] level",
            with("\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\nabstain = \"yes\"\n"),
            "\"yes\"",
            "invalid type",
            "true or false",
        ),
        case(
            "an encoder key on an ngram model",
            with("\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\nmethod = \"frozen\"\n"),
            "method",
            "applies to kind = \"encoder\" only",
            "set kind = \"encoder\"",
        ),
        // --- ngram parameters ---
        case(
            "misspelt ngram parameter",
            with("\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\n[model.params]\nbukets = 1024\n"),
            "bukets",
            "unknown parameter `params.bukets`",
            "did you mean `buckets`?",
        ),
        case(
            "an encoder parameter on an ngram model",
            with("\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\nparams = { max_length = 12 }\n"),
            "max_length",
            "unknown parameter",
            "encoder parameter",
        ),
        case(
            "ngram parameter of the wrong type",
            with(
                "\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\n[model.params]\nbuckets = \"big\"\n",
            ),
            "\"big\"",
            "`params.buckets`: invalid type",
            "whole number",
        ),
        case(
            "a negative count",
            with(
                "\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\n[model.params]\nmax_epochs = -1\n",
            ),
            "-1",
            "invalid value",
            "the default is 12",
        ),
        case(
            "a pair that is not a pair",
            with(
                "\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\n[model.params]\nword_ngrams = [1, 2, 3]\n",
            ),
            "[1, 2, 3]",
            "invalid length",
            "the default is [1, 2]",
        ),
        case(
            "ngram value out of range",
            with(
                "\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\n[model.params]\ndev_fraction = 1.5\n",
            ),
            "1.5",
            "dev_fraction must be in (0, 1)",
            "the default is 0.1",
        ),
        case(
            "ngram orders out of order",
            with(
                "\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\n[model.params]\nchar_ngrams = [5, 2]\n",
            ),
            "[5, 2]",
            "char_ngrams must be",
            "the default is [2, 5]",
        ),
        // --- distillation ---
        case(
            "distill settings without a teacher",
            with(
                "\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\n[model.params]\ndistill_temperature = 3.0\n",
            ),
            "distill_temperature",
            "needs distill_from",
            "name the teacher",
        ),
        case(
            "misspelt distill key",
            with(
                "\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\n[model.params]\ndistill_tempreature = 3.0\n",
            ),
            "distill_tempreature",
            "unknown parameter",
            "did you mean `distill_temperature`?",
        ),
        case(
            "a teacher that is not there",
            with(
                "\n[[model]]\nname = \"teacher\"\nkind = \"ngram\"\n\n[[model]]\nname = \"student\"\nkind = \"ngram\"\n[model.params]\ndistill_from = \"teachr\"\n",
            ),
            "\"teachr\"",
            "names no [[model]] listed before it",
            "did you mean `teacher`?",
        ),
        case(
            "a teacher listed after its student",
            with(
                "\n[[model]]\nname = \"student\"\nkind = \"ngram\"\n[model.params]\ndistill_from = \"teacher\"\n\n[[model]]\nname = \"teacher\"\nkind = \"ngram\"\n",
            ),
            "\"teacher\"",
            "names no [[model]] listed before it",
            "move the [[model]] `teacher` above `student`",
        ),
        case(
            "distill_alpha out of range",
            with(
                "\n[[model]]\nname = \"teacher\"\nkind = \"ngram\"\n\n[[model]]\nname = \"student\"\nkind = \"ngram\"\n[model.params]\ndistill_from = \"teacher\"\ndistill_alpha = 1.5\n",
            ),
            "1.5",
            "distill_alpha` must be between 0 and 1",
            "teacher alone",
        ),
        case(
            "distill_unlabelled file missing",
            with(
                "\n[[model]]\nname = \"teacher\"\nkind = \"ngram\"\n\n[[model]]\nname = \"student\"\nkind = \"ngram\"\n[model.params]\ndistill_from = \"teacher\"\ndistill_unlabelled = \"no-such-file.txt\"\n",
            ),
            "\"no-such-file.txt\"",
            "does not exist",
            "relative to the project root",
        ),
        // --- encoders ---
        case(
            "encoder path missing",
            with(
                "\n[[model]]\nname = \"enc\"\nkind = \"encoder\"\npath = \"models/no-such-model\"\n",
            ),
            "\"models/no-such-model\"",
            "config.json is missing",
            "scripts/get-minilm",
        ),
        case(
            "encoder without a path",
            with("\n[[model]]\nname = \"enc\"\nkind = \"encoder\"\n"),
            "\"encoder\"",
            "needs path",
            "scripts/get-minilm",
        ),
        case(
            "misspelt encoder method",
            with(&format!("{ENCODER}method = \"fine-tune\"\n")),
            "\"fine-tune\"",
            "unknown encoder method `fine-tune`",
            "did you mean `finetune`?",
        ),
        case(
            "unknown pooling",
            with(&format!("{ENCODER}pooling = \"max\"\n")),
            "\"max\"",
            "unknown pooling `max`",
            "mean, cls",
        ),
        case(
            "misspelt encoder parameter",
            with(&format!("{ENCODER}[model.params]\nmax_len = 32\n")),
            "max_len",
            "unknown parameter `params.max_len`",
            "did you mean `max_length`?",
        ),
        case(
            "misspelt fine-tuning parameter in a nested table",
            with(&format!("{ENCODER}[model.params.finetune]\nepoch = 2\n")),
            "epoch",
            "unknown parameter `params.finetune.epoch`",
            "did you mean `epochs`?",
        ),
        case(
            "fine-tuning parameter of the wrong type",
            with(&format!(
                "{ENCODER}[model.params]\nfinetune = {{ lr = \"fast\" }}\n"
            )),
            "\"fast\"",
            "`params.finetune.lr`: invalid type",
            "a number",
        ),
        case(
            "max_length beyond the model",
            with(&format!("{ENCODER}[model.params]\nmax_length = 1024\n")),
            "1024",
            "exceeds the model's max_position_embeddings 512",
            "at most 512",
        ),
        case(
            "grad_accum that does not divide the batch",
            with(&format!(
                "{ENCODER}[model.params.finetune]\nbatch_size = 10\ngrad_accum = 4\n"
            )),
            "4\n",
            "must divide batch_size",
            "grad_accum = 4",
        ),
        case(
            "unknown device",
            with(&format!("{ENCODER}[model.params]\ndevice = \"gpu\"\n")),
            "\"gpu\"",
            "is not a device",
            "cuda:N",
        ),
        case(
            "distillation on an encoder",
            with(&format!("{ENCODER}[model.params]\ndistill_from = \"x\"\n")),
            "distill_from",
            "unknown parameter",
            "ngram",
        ),
        // --- the rest of hone.toml ---
        case(
            "a language model in a classify project",
            with("\n[[model]]\nname = \"chat\"\nkind = \"lm\"\npath = \"models/tiny.gguf\"\n"),
            "\"lm\"",
            "does not fit a classify task",
            "set [task] kind = \"generate\"",
        ),
        case(
            "an encoder in a generate project",
            with(ENCODER).replace("kind = \"classify\"", "kind = \"generate\""),
            "\"encoder\"",
            "does not fit a generate task",
            "kind = \"lm\"",
        ),
        case(
            "a language model without its file",
            with("\n[[model]]\nname = \"chat\"\nkind = \"lm\"\npath = \"models/none.gguf\"\n")
                .replace("kind = \"classify\"", "kind = \"generate\""),
            "\"models/none.gguf\"",
            "does not exist",
            "scripts/get-smollm2",
        ),
        case(
            "pre-training from a model file",
            with("\n[[model]]\nname = \"chat\"\nkind = \"lm\"\npath = \"models/tiny.gguf\"\nmethod = \"pretrain\"\n")
                .replace("kind = \"classify\"", "kind = \"generate\""),
            "\"models/tiny.gguf\"",
            "starts from nothing",
            "remove `path`",
        ),
        case(
            "a misspelt language model method",
            with("\n[[model]]\nname = \"chat\"\nkind = \"lm\"\npath = \"models/tiny.gguf\"\nmethod = \"lorra\"\n")
                .replace("kind = \"classify\"", "kind = \"generate\""),
            "\"lorra\"",
            "unknown language model method",
            "did you mean `lora`?",
        ),
        case(
            "a LoRA rank of zero",
            with("\n[[model]]\nname = \"chat\"\nkind = \"lm\"\npath = \"models/tiny.gguf\"\n[model.params]\nlora_rank = 0\n")
                .replace("kind = \"classify\"", "kind = \"generate\""),
            "0",
            "`lora_rank` must be at least 1",
            "the default is 16",
        ),
        case(
            "a classification gate on a generate task",
            format!("{BASE}\n[success]\naccuracy = \">= 0.9\"\n")
                .replace("kind = \"classify\"", "kind = \"generate\""),
            "accuracy",
            "a generate task does not measure",
            "rouge_l",
        ),
        case(
            "misspelt task kind",
            BASE.replace("kind = \"classify\"", "kind = \"clasify\""),
            "\"clasify\"",
            "unknown variant",
            "did you mean `classify`?",
        ),
        case(
            "a gate rule that is not a comparison",
            with("\n[success]\naccuracy = \"at least 0.9\"\n"),
            "\"at least 0.9\"",
            "not a comparison",
            "\">= 0.90\"",
        ),
        case(
            "a gate on an unknown metric",
            with("\n[success]\nacuracy = \">= 0.9\"\n"),
            "acuracy",
            "unknown metric `acuracy`",
            "did you mean `accuracy`?",
        ),
        case(
            "a gate rule written as a bare number",
            with("\n[success]\nmacro_f1 = 0.9\n"),
            "0.9",
            "invalid type",
            "quoted comparison",
        ),
        case(
            "source file missing",
            BASE.replace("data/tickets.jsonl", "data/missing.jsonl"),
            "\"data/missing.jsonl\"",
            "does not exist",
            "relative to the project root",
        ),
        case(
            "scan encoder missing",
            with("\n[policy]\nscan_encoder = \"models/nope\"\n"),
            "\"models/nope\"",
            "not a Hugging Face model directory",
            "scripts/get-minilm",
        ),
        case(
            "misspelt policy value",
            with("\n[policy]\nnear_duplicates = \"dropp\"\n"),
            "\"dropp\"",
            "unknown variant",
            "did you mean `drop`?",
        ),
        case(
            "an unknown pii type",
            with("\n[policy]\npii_types = [\"EMAIL\", \"ADRESS\"]\n"),
            "\"ADRESS\"",
            "unknown variant",
            "did you mean `ADDRESS`?",
        ),
        case(
            "leak check typo share out of range",
            with("\n[policy]\ncontamination_edit_share = 0.6\n"),
            "0.6",
            "outside [0, 0.5)",
            "0.05 is the default",
        ),
        case(
            "split fraction out of range",
            with("\n[split]\ntest = 1.5\n"),
            "1.5",
            "outside [0, 1)",
            "test = 0.2",
        ),
        case(
            "TOML syntax error",
            with("\n[[model]]\nname = \"fast\nkind = \"ngram\"\n"),
            "\n",
            "",
            "",
        ),
    ]
}

#[test]
fn every_broken_config_fails_at_load_with_position_and_hint() {
    let cases = cases();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for c in &cases {
        let dir = project(&c.toml);
        let err = match Project::discover(&dir.path().join("sub/deeper")) {
            Ok(_) => {
                failures.push(format!("{}: loaded without error", c.name));
                continue;
            }
            Err(e) => e,
        };
        let text = err.to_string();
        let Error::Config {
            path,
            line,
            col,
            message,
            hint,
        } = err
        else {
            failures.push(format!("{}: not a config error: {text}", c.name));
            continue;
        };
        // The syntax error case only checks that there is a position and a hint.
        if c.name == "TOML syntax error" {
            if line < 1 || hint.is_empty() {
                failures.push(format!("{}: {text}", c.name));
            }
            continue;
        }
        let want = position(&c.toml, c.at, c.nth);
        let mut problems = Vec::new();
        if !path.ends_with("hone.toml") {
            problems.push(format!("path {}", path.display()));
        }
        if (line, col) != want {
            problems.push(format!("at {line}:{col}, expected {}:{}", want.0, want.1));
        }
        if !text.contains(&format!("hone.toml:{line}:{col}: ")) {
            problems.push("the message does not start with hone.toml:LINE:COL".into());
        }
        if !message.contains(c.message) {
            problems.push(format!("message lacks `{}`", c.message));
        }
        if hint.is_empty() || !hint.contains(c.hint) {
            problems.push(format!("hint lacks `{}`", c.hint));
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n    {text}", c.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

const VALID: &str = r#"
[success]
accuracy = ">= 0.5"
billing_pass_rate = ">= 0.8"

[[model]]
name = "fast"
kind = "ngram"
params = { seed = 3, l2_grid = [1.0] }

[[model]]
name = "enc"
kind = "encoder"
path = "models/tiny"
method = "finetune"
pooling = "cls"
[model.params]
max_length = 32
checkpoint_dir = "checkpoints/enc"
finetune = { epochs = 1, seed = 5 }

[[model]]
name = "student"
kind = "ngram"
abstain = true
[model.params]
distill_from = "enc"
distill_alpha = 0.25
distill_unlabelled = "unlabelled.txt"
"#;

#[test]
fn a_valid_config_loads_typed_models_with_paths_resolved_against_the_root() {
    let dir = project(&with(VALID));
    let root = dir.path();
    // Discovered from a nested directory: the process's working directory plays no part.
    let p = Project::discover(&root.join("sub/deeper")).unwrap();
    assert_eq!(p.root, root);
    let kinds: Vec<ModelKind> = p.models.iter().map(|m| m.kind()).collect();
    assert_eq!(
        kinds,
        [ModelKind::Ngram, ModelKind::Encoder, ModelKind::Ngram]
    );
    let ModelSpec::Ngram(fast) = &p.models[0].spec else {
        panic!()
    };
    assert!(fast.seed_set && fast.distill.is_none());
    assert_eq!(fast.config.l2_grid, [1.0]);
    assert_eq!(fast.seeded(7).seed, 3);
    let ModelSpec::Encoder(enc) = &p.models[1].spec else {
        panic!()
    };
    assert_eq!(enc.path, root.join("models/tiny"));
    assert_eq!(enc.path_as_written, "models/tiny");
    assert_eq!(enc.method, hone_encoder::model::Method::Finetune);
    assert_eq!(enc.pooling, hone_encoder::Pooling::Cls);
    assert_eq!(enc.params.max_length, 32);
    assert_eq!(
        enc.params.checkpoint_dir.as_deref(),
        Some(root.join("checkpoints/enc").as_path())
    );
    assert!(enc.finetune_seed_set && !enc.contrastive_seed_set);
    let seeded = enc.seeded_params(7);
    assert_eq!((seeded.finetune.seed, seeded.contrastive.seed), (5, 7));
    let ModelSpec::Ngram(student) = &p.models[2].spec else {
        panic!()
    };
    assert!(p.models[2].abstain && !student.seed_set);
    let d = student.distill.as_ref().unwrap();
    assert_eq!(d.from, "enc");
    assert_eq!((d.alpha, d.temperature, d.epochs), (0.25, 2.0, 10));
    assert_eq!(
        d.unlabelled.as_deref(),
        Some(root.join("unlabelled.txt").as_path())
    );
}

#[test]
fn encoder_defaults_are_frozen_and_mean() {
    let dir = project(&with(ENCODER));
    let p = Project::discover(dir.path()).unwrap();
    let ModelSpec::Encoder(enc) = &p.models[0].spec else {
        panic!()
    };
    assert_eq!(enc.method, hone_encoder::model::Method::Frozen);
    assert_eq!(enc.pooling, hone_encoder::Pooling::Mean);
    assert_eq!(enc.params, hone_encoder::model::EncoderParams::default());
}

#[test]
fn the_default_max_length_must_fit_the_model() {
    let dir = project(&with(ENCODER));
    std::fs::write(
        dir.path().join("models/tiny/config.json"),
        hone_encoder::testing::tiny_config_json(64),
    )
    .unwrap();
    let e = Project::discover(dir.path()).err().unwrap().to_string();
    assert!(e.contains("hone.toml:9:1: "), "{e}");
    assert!(e.contains("set max_length = 64"), "{e}");
}

#[test]
fn the_init_template_loads() {
    let template = hone_train::project::INIT_TOML.replace("{{name}}", "t");
    let dir = project(&template);
    std::fs::write(
        dir.path().join("data/examples.jsonl"),
        "{\"id\": \"ex-1\", \"text\": \"where is my refund?\", \"label\": \"refund_status\"}\n",
    )
    .unwrap();
    let p = Project::discover(dir.path()).unwrap();
    assert_eq!(p.models.len(), 1);
    assert_eq!(p.models[0].kind(), ModelKind::Ngram);
}

#[test]
fn a_project_without_models_loads() {
    let dir = project(BASE);
    let p = Project::discover(Path::new(dir.path())).unwrap();
    assert!(p.models.is_empty());
}

#[test]
fn a_model_directory_whose_config_json_does_not_read_fails_at_load_naming_that_file() {
    let dir = project(&with(ENCODER));
    std::fs::write(
        dir.path().join("models/tiny/config.json"),
        "{\"model_type\": \"bert\",\n \"hidden_size\": oops}",
    )
    .unwrap();
    let e = Project::discover(dir.path()).err().unwrap();
    match &e {
        Error::Config { path, line, .. } => {
            assert!(path.ends_with("models/tiny/config.json"), "{e}");
            assert_eq!(*line, 2, "{e}");
        }
        other => panic!("{other:?}"),
    }
}
