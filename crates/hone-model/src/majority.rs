//! The majority-class baseline: always predicts the most frequent training class, with its training
//! frequency as probability (the rest spread over the other classes by their frequencies).

use crate::store;
use hone_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

const FILE: &str = "model.json";
const FORMAT: &str = "hone-majority";
const FORMAT_VERSION: u32 = 1;

/// Predicts the most frequent class of its training labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MajorityModel {
    format: String,
    format_version: u32,
    labels: Vec<String>,
    /// Training frequency of each class (sums to 1).
    priors: Vec<f32>,
    /// The most frequent class (lowest index on ties).
    majority: u32,
}

impl MajorityModel {
    /// Fits on class indices into `label_names`. Errors on an empty training set or an out-of-range label.
    pub fn fit(train_labels: &[u32], label_names: &[String]) -> Result<MajorityModel> {
        if train_labels.is_empty() {
            return Err(Error::Data {
                message: "majority model: the training set is empty".into(),
                hint: String::new(),
            });
        }
        if label_names.is_empty() {
            return Err(Error::Usage("majority model: no label names given".into()));
        }
        let mut counts = vec![0u64; label_names.len()];
        for (i, &y) in train_labels.iter().enumerate() {
            let slot = counts.get_mut(y as usize).ok_or_else(|| {
                Error::Usage(format!(
                    "majority model: training label {y} at position {i} is out of range (there are {} labels)",
                    label_names.len()
                ))
            })?;
            *slot += 1;
        }
        let n = train_labels.len() as f64;
        let mut majority = 0;
        for (c, &k) in counts.iter().enumerate() {
            if k > counts[majority] {
                majority = c;
            }
        }
        Ok(MajorityModel {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            labels: label_names.to_vec(),
            priors: counts.iter().map(|&k| (k as f64 / n) as f32).collect(),
            majority: majority as u32,
        })
    }

    /// Class probabilities (the training frequencies; the text is ignored).
    pub fn predict_proba(&self, _text: &str) -> Vec<f32> {
        self.priors.clone()
    }

    /// [`MajorityModel::predict_proba`] for each text.
    pub fn predict_proba_batch(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        texts.iter().map(|t| self.predict_proba(t)).collect()
    }

    /// The predicted class index (always the majority class).
    pub fn predict(&self, _text: &str) -> u32 {
        self.majority
    }

    /// Label names, indexed by class.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Writes `dir/model.json` (temp file + rename).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Internal(format!("majority model: serialising: {e}")))?;
        store::write_atomic(dir, FILE, &json)
    }

    /// Reads `dir/model.json`; missing or corrupt files are errors naming the file.
    pub fn load(dir: &Path) -> Result<MajorityModel> {
        let (path, bytes) = store::read(dir, FILE)?;
        let m: MajorityModel =
            serde_json::from_slice(&bytes).map_err(|e| store::corrupt(&path, e))?;
        if m.format != FORMAT || m.format_version != FORMAT_VERSION {
            return Err(store::corrupt(
                &path,
                format!(
                    "expected format {FORMAT} v{FORMAT_VERSION}, found {} v{}",
                    m.format, m.format_version
                ),
            ));
        }
        if m.labels.is_empty()
            || m.labels.len() != m.priors.len()
            || m.majority as usize >= m.labels.len()
        {
            return Err(store::corrupt(
                &path,
                "labels, priors and majority class disagree",
            ));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_fit_predict_roundtrip() {
        let names = vec!["a".to_string(), "b".into(), "c".into()];
        let m = MajorityModel::fit(&[1, 1, 0, 1, 2], &names).unwrap();
        assert_eq!(m.predict("anything"), 1);
        let p = m.predict_proba("x");
        assert!((p[1] - 0.6).abs() < 1e-6);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        let dir = std::env::temp_dir().join(format!("hone-majority-{}", std::process::id()));
        m.save(&dir).unwrap();
        assert_eq!(MajorityModel::load(&dir).unwrap(), m);
        std::fs::write(dir.join(FILE), b"{not json").unwrap();
        let e = MajorityModel::load(&dir).unwrap_err().to_string();
        assert!(e.contains("model.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(MajorityModel::fit(&[], &names).is_err());
        assert!(MajorityModel::fit(&[3], &names).is_err());
        assert!(MajorityModel::load(&dir).is_err());
    }
}
