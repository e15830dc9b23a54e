//! The one SplitMix64 step (Steele, Lea & Flood) behind every seeded generator in hone: fixtures, fold
//! shuffles, dropout masks, the demo. Callers keep their own seeding and bounded draws on top of it.

/// Advance `state` and return the next 64 random bits.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_reference_outputs() {
        // SplitMix64 reference values for seed 0 (as in the xoshiro authors' seeding code).
        let mut s = 0u64;
        assert_eq!(super::splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(super::splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
    }
}
