//! A compact one-line diff of two texts (`prefix[-old-]{+new+}suffix`), used in lineage to show what a
//! pass changed. Callers pass texts that are already PII-masked.

/// Characters of unchanged context kept on each side of the changed region.
const CONTEXT: usize = 24;

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
    let show = |cs: &[char]| -> String { cs.iter().flat_map(|c| c.escape_debug()).collect() };
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
