//! hone's learned detector of personal names, street addresses, places and organisations: a
//! hashed-feature averaged-perceptron tagger trained deterministically from a seeded generator on
//! first use, cached per user, and identified everywhere by its fingerprint.
//!
//! ```text
//! lists (fake locales + hone's own) ─┐
//! frames (generate.rs) ──────────────┴─> corpus ─> train (model.rs) ─> Weights ─> cache file
//!                                        fingerprint = blake3(version, settings, lists, frames)
//! ```
//!
//! [`shared`] gives the process-wide tagger: loaded from `$HONE_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/hone`, else `~/.cache/hone` when a file with the right fingerprint and checksum is
//! there, otherwise trained (a few seconds) and written there atomically. A cache that cannot be
//! written is not an error: the tagger is then trained in memory once per process.

pub mod generate;
pub mod lists;
pub mod model;
pub mod tokens;

use std::io::Write;
use std::path::PathBuf;
use std::sync::LazyLock;

/// The kinds of entity the tagger finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    Person,
    Address,
    Location,
    Org,
}

impl Entity {
    /// Every kind, in class order.
    pub const ALL: [Entity; 4] = [
        Entity::Person,
        Entity::Address,
        Entity::Location,
        Entity::Org,
    ];
}

/// Bumped whenever features, decoding or the file format change.
const FORMAT: &str = "hone-ner/2";

/// A trained tagger.
pub struct Tagger {
    weights: model::Weights,
    fingerprint: String,
    /// Where it came from: `"cache"`, `"trained"` (and written to the cache) or `"trained, not cached: …"`.
    pub origin: String,
}

impl Tagger {
    /// Entity spans in `text`: byte offsets, sorted, non-overlapping.
    pub fn spans(&self, text: &str) -> Vec<(usize, usize, Entity)> {
        self.weights.spans(text)
    }

    /// Number of features with weights.
    pub fn features(&self) -> usize {
        self.weights.features()
    }

    /// The bias of a capitalised unknown word towards "person".
    pub fn unknown_name_bias(&self) -> f32 {
        self.weights.unknown_name_bias()
    }

    /// Overrides the bias (for probing the trade-off).
    pub fn set_unknown_name_bias(&mut self, b: f32) {
        self.weights.set_unknown_name_bias(b);
    }

    /// Per-token classes and class scores of `text` (for inspecting a decision).
    pub fn explain(&self, text: &str) -> Vec<(String, u8, [f32; model::CLASSES])> {
        model::explain(&self.weights, text)
    }

    /// The fingerprint of the training recipe (version, settings, lists, frames): equal fingerprints,
    /// equal weights.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Trains a tagger with `cfg` (no cache).
    pub fn train(cfg: &model::TrainConfig) -> Tagger {
        let corpus = generate::corpus(cfg.seed, cfg.examples);
        let weights = model::train(&corpus, cfg);
        Tagger {
            weights,
            fingerprint: fingerprint(cfg),
            origin: "trained".into(),
        }
    }
}

/// The fingerprint of a training recipe: blake3 over the format, the settings, every list value and
/// every frame, as hex.
pub fn fingerprint(cfg: &model::TrainConfig) -> String {
    let mut h = blake3::Hasher::new();
    h.update(FORMAT.as_bytes());
    h.update(
        format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}",
            cfg.seed,
            model::UNKNOWN_NAME_BIAS,
            cfg.examples,
            cfg.epochs,
            cfg.word_dropout,
            cfg.other_dropout,
            cfg.gazetteer_dropout,
            model::PRUNE_BELOW,
            model::CLASSES
        )
        .as_bytes(),
    );
    // The code that generates, featurises and trains is part of the recipe too: a change to it must
    // never load weights trained by the old code.
    const SOURCES: [&str; 4] = [
        include_str!("generate.rs"),
        include_str!("model.rs"),
        include_str!("tokens.rs"),
        include_str!("lists.rs"),
    ];
    for v in lists::LISTS
        .all_values()
        .into_iter()
        .chain(generate::frames_for_fingerprint())
        .chain(SOURCES)
    {
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

/// The per-user cache directory hone keeps derived artefacts in.
pub fn cache_dir() -> Option<PathBuf> {
    let non_empty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    non_empty("HONE_CACHE_DIR")
        .or_else(|| non_empty("XDG_CACHE_HOME").map(|p| p.join("hone")))
        .or_else(|| non_empty("HOME").map(|p| p.join(".cache").join("hone")))
}

const MAGIC: &[u8; 8] = b"HONENER2";

fn cache_file(dir: &std::path::Path, fp: &str) -> PathBuf {
    dir.join(format!("pii-tagger-{}.bin", &fp[..16]))
}

fn read_cached(path: &std::path::Path, fp: &str) -> Option<model::Weights> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 8 + 64 + 32 || &bytes[..8] != MAGIC || &bytes[8..72] != fp.as_bytes() {
        return None;
    }
    let body = bytes.len() - 32;
    if blake3::hash(&bytes[..body]).as_bytes() != &bytes[body..] {
        return None;
    }
    model::Weights::from_bytes(&bytes[72..body])
}

fn write_cached(path: &std::path::Path, fp: &str, w: &model::Weights) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(fp.as_bytes());
    bytes.extend_from_slice(&w.to_bytes());
    let sum = blake3::hash(&bytes);
    bytes.extend_from_slice(sum.as_bytes());
    // Written beside the target and renamed: a reader never sees half a file, and two processes
    // training at once both write whole, identical files.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("tagger"),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Loads the tagger for `cfg` from `dir` or trains it and stores it there.
pub fn load_or_train(dir: Option<&std::path::Path>, cfg: &model::TrainConfig) -> Tagger {
    let fp = fingerprint(cfg);
    if let Some(d) = dir
        && let Some(w) = read_cached(&cache_file(d, &fp), &fp)
    {
        return Tagger {
            weights: w,
            fingerprint: fp,
            origin: "cache".into(),
        };
    }
    let mut t = Tagger::train(cfg);
    t.origin = match dir {
        Some(d) => match write_cached(&cache_file(d, &fp), &fp, &t.weights) {
            Ok(()) => "trained".into(),
            Err(e) => format!("trained, not cached: {}: {e}", d.display()),
        },
        None => "trained, not cached: no cache directory (set HONE_CACHE_DIR)".into(),
    };
    t
}

static SHARED: LazyLock<Tagger> =
    LazyLock::new(|| load_or_train(cache_dir().as_deref(), &model::TrainConfig::DEFAULT));

/// The process-wide tagger with the default recipe (loaded or trained on first use).
pub fn shared() -> &'static Tagger {
    &SHARED
}

/// Whether the default tagger is in the per-user cache (else first use trains it, about 8 s).
pub fn default_is_cached() -> bool {
    cache_dir().is_some_and(|d| cache_file(&d, default_fingerprint()).is_file())
}

/// The default recipe's fingerprint, without loading or training anything.
pub fn default_fingerprint() -> &'static str {
    static FP: LazyLock<String> = LazyLock::new(|| fingerprint(&model::TrainConfig::DEFAULT));
    &FP
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: model::TrainConfig = model::TrainConfig {
        examples: 400,
        epochs: 2,
        ..model::TrainConfig::DEFAULT
    };

    #[test]
    fn training_is_deterministic_and_the_cache_round_trips_and_rejects_a_corrupt_file() {
        let a = Tagger::train(&TINY);
        let b = Tagger::train(&TINY);
        assert_eq!(a.weights.to_bytes(), b.weights.to_bytes());
        assert_ne!(
            fingerprint(&TINY),
            fingerprint(&model::TrainConfig::DEFAULT)
        );

        let dir = tempfile::tempdir().unwrap();
        let first = load_or_train(Some(dir.path()), &TINY);
        assert_eq!(first.origin, "trained");
        let again = load_or_train(Some(dir.path()), &TINY);
        assert_eq!(again.origin, "cache");
        assert_eq!(again.weights.to_bytes(), a.weights.to_bytes());

        // A flipped byte fails the checksum: the tagger is trained again, never read half-right.
        let path = cache_file(dir.path(), &fingerprint(&TINY));
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(load_or_train(Some(dir.path()), &TINY).origin, "trained");
        assert_eq!(load_or_train(Some(dir.path()), &TINY).origin, "cache");
    }

    #[test]
    fn an_unwritable_cache_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let t = load_or_train(Some(&file), &TINY);
        assert!(t.origin.starts_with("trained, not cached"), "{}", t.origin);
    }

    #[test]
    fn the_default_tagger_finds_names_and_streets_and_leaves_look_alikes() {
        let t = shared();
        let found = |text: &str| -> Vec<(Entity, String)> {
            t.spans(text)
                .into_iter()
                .map(|(s, e, k)| (k, text[s..e].to_string()))
                .collect()
        };
        assert_eq!(
            found("My name is John Smith and I need a new card."),
            vec![(Entity::Person, "John Smith".to_string())]
        );
        assert!(
            found("Please send it to 14 Cedar Road, Manchester.")
                .contains(&(Entity::Address, "14 Cedar Road".to_string())),
            "{:?}",
            found("Please send it to 14 Cedar Road, Manchester.")
        );
        assert_eq!(found("Can I pay with Apple Pay on Monday?"), vec![]);
        assert_eq!(found("I was charged twice for the same order."), vec![]);
    }

    /// General-knowledge text about places is not personal data: a one-word "person" that the lists
    /// know as a place is a place after a place preposition or beside another place.
    #[test]
    fn places_read_as_names_are_places_and_a_name_stays_a_name() {
        let t = shared();
        let kinds = |text: &str| -> Vec<(Entity, String)> {
            t.spans(text)
                .into_iter()
                .map(|(s, e, k)| (k, text[s..e].to_string()))
                .collect()
        };
        let place = |w: &str| (Entity::Location, w.to_string());
        assert_eq!(
            kinds("What is the capital of France?"),
            vec![place("France")]
        );
        assert_eq!(
            kinds("The capital of France is Paris."),
            vec![place("France"), place("Paris")]
        );
        assert_eq!(
            kinds("My name is Paris and I need help."),
            vec![(Entity::Person, "Paris".to_string())]
        );
        assert_eq!(
            kinds("I spoke with Jordan yesterday."),
            vec![(Entity::Person, "Jordan".to_string())]
        );
    }

    #[test]
    fn names_no_list_has_are_found_in_sentences_no_frame_wrote() {
        let t = shared();
        let persons = |text: &str| -> Vec<String> {
            t.spans(text)
                .into_iter()
                .filter(|s| s.2 == Entity::Person)
                .map(|(s, e, _)| text[s..e].to_string())
                .collect()
        };
        // Neither the names nor these sentences are in the generator's lists or frames.
        for (text, name) in [
            (
                "My colleague Przemysław Brzęczyszczykiewicz asked me to write.",
                "Przemysław Brzęczyszczykiewicz",
            ),
            (
                "Chidinma Okwuosa here. Why can't I verify my id?",
                "Chidinma Okwuosa",
            ),
            (
                "This is Tadeusz Brzęczyszczykiewicz from accounts: I need a refund.",
                "Tadeusz Brzęczyszczykiewicz",
            ),
            (
                "Please ask Tadeusz Okwuosa to call me back.",
                "Tadeusz Okwuosa",
            ),
        ] {
            assert_eq!(persons(text), vec![name.to_string()], "{text:?}");
        }
        // A first name that the context reads as an organisation ("the bills from …") is a person,
        // masked whole under the default policy where organisations are opt-in.
        assert_eq!(
            persons("can you help me downloading the invoices from David Miller?"),
            vec!["David Miller".to_string()]
        );
        // An organisation keeps its kind.
        assert!(
            t.spans("The charge from Brightwell Logistics is not mine.")
                .iter()
                .all(|s| s.2 == Entity::Org)
        );
    }
}
