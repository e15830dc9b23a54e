//! Content hashing (blake3) used for object addresses, cache keys and text fingerprints.

/// Hex blake3 of bytes.
pub fn hash_bytes(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Hex blake3 of a string.
pub fn hash_str(text: &str) -> String {
    hash_bytes(text.as_bytes())
}

/// A short, human-friendly prefix of a hex hash (12 characters), used in ids shown to users.
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Incremental hasher over labelled parts, so that `("a", "bc")` and `("ab", "c")` differ.
#[derive(Default)]
pub struct KeyHasher(blake3::Hasher);

impl KeyHasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn part(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.0.update(&(name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update(&(value.len() as u64).to_le_bytes());
        self.0.update(value);
        self
    }
    pub fn finish(&self) -> String {
        self.0.finalize().to_hex().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hasher_separates_parts() {
        let a = KeyHasher::new().part("x", b"a").part("y", b"bc").finish();
        let b = KeyHasher::new().part("x", b"ab").part("y", b"c").finish();
        assert_ne!(a, b);
        assert_eq!(hash_str("abc").len(), 64);
        assert_eq!(short(&hash_str("abc")).len(), 12);
    }
}
