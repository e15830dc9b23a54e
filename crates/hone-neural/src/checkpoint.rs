//! Resumable training checkpoints, for any model: a directory with `checkpoint.safetensors` (weights,
//! optimiser moments and step, best-epoch snapshots: named tensors the trainer groups under prefixes) and
//! `checkpoint.json` (the trainer's metadata, its settings among them). Each file is written through a
//! temp file and a rename, so a crash leaves the last whole pair; a checkpoint made with other settings is
//! refused rather than resumed.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use hone_core::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::candle_err;

/// The weights file in a checkpoint directory.
pub const WEIGHTS: &str = "checkpoint.safetensors";
/// The metadata file in a checkpoint directory.
pub const META: &str = "checkpoint.json";

/// The tensors of a checkpoint by name; a group (a model's parameters, one optimiser's state) is stored
/// under `PREFIX.NAME`.
#[derive(Debug, Default, Clone)]
pub struct Tensors(pub HashMap<String, Tensor>);

impl Tensors {
    /// Adds `named` under `prefix.` (`prefix` without the dot).
    pub fn insert(&mut self, prefix: &str, named: impl IntoIterator<Item = (String, Tensor)>) {
        for (n, t) in named {
            self.0.insert(format!("{prefix}.{n}"), t);
        }
    }

    /// The tensor `name` of the group `prefix`.
    pub fn get(&self, prefix: &str, name: &str) -> Option<Tensor> {
        self.0.get(&format!("{prefix}.{name}")).cloned()
    }
}

/// Creates `dir` if needed and reads the checkpoint in it, if there is one: its metadata and tensors (on
/// `device`). `same_settings` says whether the metadata was written with the current settings; when it
/// says no, the checkpoint is refused with a usage error (delete it to start over).
pub fn resume<M: DeserializeOwned>(
    dir: &Path,
    device: &Device,
    same_settings: impl FnOnce(&M) -> bool,
) -> Result<Option<(M, Tensors)>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let meta_p = dir.join(META);
    if !meta_p.is_file() {
        return Ok(None);
    }
    let meta: M =
        serde_json::from_slice(&std::fs::read(&meta_p).map_err(|e| Error::io(&meta_p, e))?)
            .map_err(|e| Error::Internal(format!("{}: {e}", meta_p.display())))?;
    if !same_settings(&meta) {
        return Err(Error::Usage(format!(
            "the checkpoint in {} was made with other settings; delete it to start over",
            dir.display()
        )));
    }
    let tensors = candle_core::safetensors::load(dir.join(WEIGHTS), device).map_err(candle_err)?;
    Ok(Some((meta, Tensors(tensors))))
}

/// Writes weights then metadata into `dir`, each through a temp file and a rename, so a crash leaves the
/// last whole pair.
pub fn write<M: Serialize>(dir: &Path, tensors: &Tensors, meta: &M) -> Result<()> {
    let wp = dir.join(WEIGHTS);
    let tmp = dir.join(format!("{WEIGHTS}.tmp"));
    candle_core::safetensors::save(&tensors.0, &tmp)
        .map_err(|e| Error::io(&tmp, std::io::Error::other(e.to_string())))?;
    std::fs::rename(&tmp, &wp).map_err(|e| Error::io(&wp, e))?;
    let mp = dir.join(META);
    let tmp = dir.join(format!("{META}.tmp"));
    let bytes = serde_json::to_vec_pretty(meta).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &mp).map_err(|e| Error::io(&mp, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{AdamWConfig, FusedAdamW};
    use candle_core::Var;

    #[test]
    fn weights_moments_and_step_come_back_and_other_settings_are_refused() {
        let dir = std::env::temp_dir().join(format!("hone-neural-ck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let dev = Device::Cpu;
        assert!(
            resume::<(u64, String)>(&dir, &dev, |_| true)
                .unwrap()
                .is_none()
        );
        assert!(dir.is_dir(), "resume creates the directory");

        let w = Var::from_slice(&[1f32, -2.0, 3.0], 3, &dev).unwrap();
        let mut opt =
            FusedAdamW::new(vec![("w".into(), w.clone())], AdamWConfig::default()).unwrap();
        for _ in 0..3 {
            let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap(), 0.1, 1.0).unwrap();
        }
        let mut t = Tensors::default();
        t.insert("model", [("w".to_string(), w.as_tensor().copy().unwrap())]);
        t.insert("opt", opt.state().unwrap());
        write(&dir, &t, &(3u64, "settings A".to_string())).unwrap();
        assert!(dir.join(WEIGHTS).is_file() && dir.join(META).is_file());
        assert!(!dir.join(format!("{WEIGHTS}.tmp")).exists());

        let (meta, back) = resume::<(u64, String)>(&dir, &dev, |m| m.1 == "settings A")
            .unwrap()
            .expect("a checkpoint");
        assert_eq!(meta, (3, "settings A".to_string()));
        let w2 = Var::from_slice(&[0f32; 3], 3, &dev).unwrap();
        w2.set(&back.get("model", "w").unwrap()).unwrap();
        assert_eq!(
            w2.as_tensor().to_vec1::<f32>().unwrap(),
            w.as_tensor().to_vec1::<f32>().unwrap()
        );
        let mut opt2 =
            FusedAdamW::new(vec![("w".into(), w2.clone())], AdamWConfig::default()).unwrap();
        opt2.load_state(&|n| back.get("opt", n)).unwrap();
        assert_eq!(opt2.steps(), 3);
        // Restored moments give the uninterrupted run's next step exactly.
        for (o, v) in [(&mut opt, &w), (&mut opt2, &w2)] {
            let loss = v.as_tensor().sqr().unwrap().sum_all().unwrap();
            o.step(&loss.backward().unwrap(), 0.1, 1.0).unwrap();
        }
        assert_eq!(
            w2.as_tensor().to_vec1::<f32>().unwrap(),
            w.as_tensor().to_vec1::<f32>().unwrap()
        );

        let e = resume::<(u64, String)>(&dir, &dev, |m| m.1 == "settings B")
            .unwrap_err()
            .to_string();
        assert!(e.contains("other settings"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
