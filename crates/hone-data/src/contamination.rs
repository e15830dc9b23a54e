//! The contamination check between the frozen test set (and every suite) and the training data: shared
//! ids, exact matches after normalising, near-duplicates (the same MinHash LSH + short-text containment as
//! curation), and long n-gram overlap (13 tokens by default). Training refuses to start on any finding
//! unless the policy drops the contaminated training records (DESIGN §7.2).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::near_dup::{NearDupConfig, find_near_duplicates, jaccard, tokenize};

/// One side of the check: an id and its text.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub id: &'a str,
    pub text: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContaminationConfig {
    /// Token n-gram length for the overlap check (default 13).
    pub ngram: usize,
    /// A (test, train) pair leaks by n-gram overlap when at least this share of the test text's distinct
    /// n-grams occur in the training text (default 0.5), so shared boilerplate alone does not count.
    pub ngram_share: f64,
    pub near: NearDupConfig,
}

impl Default for ContaminationConfig {
    fn default() -> Self {
        ContaminationConfig {
            ngram: 13,
            ngram_share: 0.5,
            near: NearDupConfig::default(),
        }
    }
}

/// One contaminated pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContaminationPair {
    pub test_id: String,
    pub train_id: String,
    /// `shared_id`, `exact`, `near_duplicate` or `ngram_overlap`.
    pub kind: String,
    /// Word-shingle Jaccard of the two texts (1.0 for exact matches).
    pub similarity: f64,
}

fn normalised_key(text: &str) -> String {
    tokenize(text).join(" ")
}

fn ngram_hashes(text: &str, n: usize) -> Vec<u64> {
    let toks = tokenize(text);
    if n == 0 || toks.len() < n {
        return Vec::new();
    }
    toks.windows(n)
        .map(|w| {
            u64::from_le_bytes(
                blake3::hash(w.join(" ").as_bytes()).as_bytes()[..8]
                    .try_into()
                    .unwrap_or([0; 8]),
            )
        })
        .collect()
}

/// Find every (test, train) pair that leaks. Pairs are sorted and each (test, train) pair appears once, under
/// its strongest kind (shared id > exact > near-duplicate > n-gram overlap).
pub fn check(test: &[Item], train: &[Item], cfg: &ContaminationConfig) -> Vec<ContaminationPair> {
    let mut found: BTreeMap<(String, String), (u8, String, f64)> = BTreeMap::new();
    let mut add = |t: &str, r: &str, rank: u8, kind: &str, sim: f64| {
        let e =
            found
                .entry((t.to_string(), r.to_string()))
                .or_insert((u8::MAX, String::new(), sim));
        if rank < e.0 {
            *e = (rank, kind.to_string(), sim);
        }
    };
    let test_ids: HashMap<&str, usize> = test.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    for r in train {
        if test_ids.contains_key(r.id) {
            add(r.id, r.id, 0, "shared_id", 1.0);
        }
    }
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, t) in test.iter().enumerate() {
        by_key.entry(normalised_key(t.text)).or_default().push(i);
    }
    for r in train {
        if let Some(ts) = by_key.get(&normalised_key(r.text)) {
            for &i in ts {
                add(test[i].id, r.id, 1, "exact", 1.0);
            }
        }
    }
    // Near-duplicates: cluster both sides together; a cluster holding both test and train items leaks.
    let texts: Vec<&str> = test.iter().chain(train).map(|x| x.text).collect();
    let clusters = find_near_duplicates(&texts, &cfg.near).cluster_of;
    let mut members: HashMap<u32, (Vec<usize>, Vec<usize>)> = HashMap::new();
    for (i, &c) in clusters.iter().enumerate() {
        let e = members.entry(c).or_default();
        if i < test.len() {
            e.0.push(i)
        } else {
            e.1.push(i - test.len())
        }
    }
    let mut cluster_ids: Vec<&u32> = members.keys().collect();
    cluster_ids.sort();
    for c in cluster_ids {
        let (ts, rs) = &members[c];
        for &t in ts {
            for &r in rs {
                add(
                    test[t].id,
                    train[r].id,
                    2,
                    "near_duplicate",
                    jaccard(test[t].text, train[r].text, cfg.near.shingle_words),
                );
            }
        }
    }
    // Long n-gram overlap: the share of a test text's distinct n-grams found in one training text.
    let mut grams: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut n_grams = vec![0usize; test.len()];
    for (i, t) in test.iter().enumerate() {
        let mut seen = HashSet::new();
        for h in ngram_hashes(t.text, cfg.ngram) {
            if seen.insert(h) {
                grams.entry(h).or_default().push(i);
            }
        }
        n_grams[i] = seen.len();
    }
    if !grams.is_empty() {
        for r in train {
            let mut shared: HashMap<usize, usize> = HashMap::new();
            let mut seen = HashSet::new();
            for h in ngram_hashes(r.text, cfg.ngram) {
                if seen.insert(h) {
                    for &t in grams.get(&h).into_iter().flatten() {
                        *shared.entry(t).or_default() += 1;
                    }
                }
            }
            for (t, k) in shared {
                if k as f64 >= cfg.ngram_share * n_grams[t] as f64 {
                    add(
                        test[t].id,
                        r.id,
                        3,
                        "ngram_overlap",
                        jaccard(test[t].text, r.text, cfg.near.shingle_words),
                    );
                }
            }
        }
    }
    found
        .into_iter()
        .map(
            |((test_id, train_id), (_, kind, similarity))| ContaminationPair {
                test_id,
                train_id,
                kind,
                similarity,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items<'a>(v: &'a [(&'a str, &'a str)]) -> Vec<Item<'a>> {
        v.iter().map(|(id, text)| Item { id, text }).collect()
    }

    #[test]
    fn finds_each_kind_of_leak_and_nothing_else() {
        let long = "the quick brown fox jumps over the lazy dog while the farmer watches from the old red barn at dawn";
        let test = [
            ("t1", "Where is my refund?"),
            ("t2", "my card was stolen at the station yesterday evening"),
            ("t3", long),
            ("t4", "completely unrelated question about exchange rates"),
            ("t5", "same id"),
        ];
        let leaked_long = format!(
            "prefix words here {} and more words after it to make it different",
            &long[..85]
        );
        let train = [
            ("r1", "where is my REFUND"),
            (
                "r2",
                "my card was stolen at the station yesterday evening please help",
            ),
            ("r3", leaked_long.as_str()),
            ("r4", "how do I top up my account by bank transfer"),
            ("t5", "another text"),
        ];
        let pairs = check(
            &items(&test),
            &items(&train),
            &ContaminationConfig::default(),
        );
        let got: Vec<(&str, &str, &str)> = pairs
            .iter()
            .map(|p| (p.test_id.as_str(), p.train_id.as_str(), p.kind.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("t1", "r1", "exact"),
                ("t2", "r2", "near_duplicate"),
                ("t3", "r3", "ngram_overlap"),
                ("t5", "t5", "shared_id")
            ]
        );
    }

    #[test]
    fn shared_boilerplate_below_the_share_is_not_a_leak() {
        let boiler = "thank you for contacting our support team we will get back to you within two working days";
        let t = format!(
            "my card was declined at the supermarket this morning and again at the pharmacy {boiler}"
        );
        let r = format!(
            "I would like to change the address on my account to my new flat in the city {boiler}"
        );
        let test = [("t1", t.as_str())];
        let train = [("r1", r.as_str())];
        let cfg = ContaminationConfig::default();
        assert!(check(&items(&test), &items(&train), &cfg).is_empty());
        let strict = ContaminationConfig {
            ngram_share: 0.01,
            ..cfg
        };
        assert_eq!(
            check(&items(&test), &items(&train), &strict)[0].kind,
            "ngram_overlap"
        );
    }

    #[test]
    fn clean_sides_give_no_pairs() {
        let test = [("t1", "what is the exchange rate for euros")];
        let train = [("r1", "I lost my card on the bus")];
        assert!(
            check(
                &items(&test),
                &items(&train),
                &ContaminationConfig::default()
            )
            .is_empty()
        );
    }
}
