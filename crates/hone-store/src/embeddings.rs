//! The embedding cache: vectors of a frozen encoder keyed by blake3(model fingerprint, settings, text),
//! so an unchanged text is never embedded twice by the same model, across versions and runs.

use std::collections::HashMap;

use hone_core::{Error, Result};
use rusqlite::params;

use crate::{Store, db_err};

impl Store {
    /// The cached vectors among `keys` (missing keys are absent from the map).
    pub fn get_embeddings(&self, keys: &[String]) -> Result<HashMap<String, Vec<f32>>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT dim, vector FROM embeddings WHERE key = ?1")
            .map_err(db_err)?;
        let mut out = HashMap::new();
        for k in keys {
            let row: Option<(i64, Vec<u8>)> = stmt
                .query_row(params![k], |r| Ok((r.get(0)?, r.get(1)?)))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .map_err(db_err)?;
            if let Some((dim, bytes)) = row {
                if bytes.len() != dim as usize * 4 {
                    return Err(Error::Store(format!(
                        "embedding {k}: {} bytes for dimension {dim}",
                        bytes.len()
                    )));
                }
                let v = bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                out.insert(k.clone(), v);
            }
        }
        Ok(out)
    }

    /// Stores vectors in one transaction (existing keys are left as they are: same key, same vector).
    pub fn put_embeddings(&self, rows: &[(String, Vec<f32>)]) -> Result<()> {
        let tx = self.conn.unchecked_transaction().map_err(db_err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO embeddings (key, dim, vector) VALUES (?1, ?2, ?3)",
                )
                .map_err(db_err)?;
            for (k, v) in rows {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                stmt.execute(params![k, v.len() as i64, bytes])
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// How many vectors the cache holds.
    pub fn embedding_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM embeddings", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[test]
    fn vectors_round_trip_and_missing_keys_are_absent() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put_embeddings(&[("a".into(), vec![1.0, -2.5]), ("b".into(), vec![0.0, 3.25])])
            .unwrap();
        s.put_embeddings(&[("a".into(), vec![9.0, 9.0])]).unwrap();
        let got = s
            .get_embeddings(&["a".into(), "b".into(), "c".into()])
            .unwrap();
        assert_eq!(got["a"], vec![1.0, -2.5], "first write wins");
        assert_eq!(got["b"], vec![0.0, 3.25]);
        assert!(!got.contains_key("c"));
        assert_eq!(s.embedding_count().unwrap(), 2);
    }
}
