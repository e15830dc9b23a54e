//! A compact one-line diff of two texts (`prefix[-old-]{+new+}suffix`), used in lineage to show what a
//! pass changed. Callers pass texts that are already PII-masked.

/// Characters of unchanged context kept on each side of the changed region.
const CONTEXT: usize = 24;

/// A character as a reader should see it in a one-line diff: line breaks and tabs as `\n`, `\r`,
/// `\t`; other control and invisible format characters (C1 controls such as U+0092, zero-width
/// spaces, direction marks) as `⟨U+0092⟩`; everything else, quotes and backslashes included, as is.
fn visible(c: char) -> String {
    match c {
        '\n' => "\\n".into(),
        '\r' => "\\r".into(),
        '\t' => "\\t".into(),
        c if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}') =>
        {
            format!("⟨U+{:04X}⟩", c as u32)
        }
        c => c.to_string(),
    }
}

/// Diff `before` → `after` as one line: the common prefix and suffix are cut to a short context and the
/// changed middle is shown as `[-removed-]{+added+}`. Control characters are shown escaped.
pub fn diff(before: &str, after: &str) -> String {
    let b: Vec<char> = before.chars().collect();
    let a: Vec<char> = after.chars().collect();
    let prefix = b.iter().zip(&a).take_while(|(x, y)| x == y).count();
    let max_suffix = b.len().min(a.len()) - prefix;
    let suffix = b
        .iter()
        .rev()
        .zip(a.iter().rev())
        .take(max_suffix)
        .take_while(|(x, y)| x == y)
        .count();
    let show = |cs: &[char]| -> String { cs.iter().map(|&c| visible(c)).collect() };
    let head_start = prefix.saturating_sub(CONTEXT);
    let mut out = String::new();
    if head_start > 0 {
        out.push('…');
    }
    out.push_str(&show(&b[head_start..prefix]));
    let removed = &b[prefix..b.len() - suffix];
    let added = &a[prefix..a.len() - suffix];
    if !removed.is_empty() {
        out.push_str("[-");
        out.push_str(&show(removed));
        out.push_str("-]");
    }
    if !added.is_empty() {
        out.push_str("{+");
        out.push_str(&show(added));
        out.push_str("+}");
    }
    let tail = &b[b.len() - suffix..];
    out.push_str(&show(&tail[..tail.len().min(CONTEXT)]));
    if tail.len() > CONTEXT {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::diff;

    #[test]
    fn shows_only_the_changed_middle() {
        assert_eq!(diff("a &lt; b", "a < b"), "a [-&lt;-]{+<+} b");
        assert_eq!(diff("x  y", "x y"), "x [- -]y");
        assert_eq!(diff("same", "same"), "same");
        assert_eq!(diff("", "new"), "{+new+}");
        assert_eq!(diff("line\n", "line"), "line[-\\n-]");
        // Readable, not Rust's escapes: a C1 control and a zero-width space by code point, quotes as is.
        assert_eq!(diff("it\u{92}s", "it's"), "it[-⟨U+0092⟩-]{+'+}s");
        assert_eq!(diff("a\u{200b}b \"q\"", "ab \"q\""), "a[-⟨U+200B⟩-]b \"q\"");
    }

    #[test]
    fn long_context_is_cut_on_char_boundaries() {
        let before = format!("{}é{}", "ü".repeat(40), "ö".repeat(40));
        let after = format!("{}e{}", "ü".repeat(40), "ö".repeat(40));
        let d = diff(&before, &after);
        assert!(d.starts_with('…') && d.ends_with('…'), "{d}");
        assert!(d.contains("[-é-]{+e+}"), "{d}");
    }
}
