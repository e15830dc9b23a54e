//! Splitting text into the tokens the tagger labels: words (with inner apostrophes and hyphens),
//! numbers, and single punctuation marks, each with its byte offsets into the text.

/// One token: `text[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub start: usize,
    pub end: usize,
    /// A line break lies between this token and the one before it.
    pub after_newline: bool,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '\u{300}'..='\u{36F}')
}

/// Whether `text` is written in a script without case and spaces between words (CJK, kana): such runs
/// are split into single characters so that a name inside them can be a token of its own.
fn is_unspaced_script(c: char) -> bool {
    matches!(c, '\u{3040}'..='\u{30FF}' | '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}')
}

/// The tokens of `text`, in order.
pub fn tokenize(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut newline = false;
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() {
            newline |= c == '\n';
            continue;
        }
        let mut end = i + c.len_utf8();
        // A web address or e-mail is one token: its pieces ("co", "uk", "www") are not words.
        let chunk_end = text[i..]
            .find(char::is_whitespace)
            .map_or(text.len(), |k| i + k);
        let chunk = &text[i..chunk_end];
        if chunk.contains("://") || chunk.starts_with("www.") || chunk.contains('@') {
            while chars.peek().is_some_and(|&(j, _)| j < chunk_end) {
                chars.next();
            }
            out.push(Token {
                start: i,
                end: chunk_end,
                after_newline: newline,
            });
            newline = false;
            continue;
        }
        if is_unspaced_script(c) {
            // Runs of these scripts become two-character tokens: close to the length of a CJK name or
            // word, without a dictionary.
            if let Some(&(j, d)) = chars.peek()
                && is_unspaced_script(d)
            {
                chars.next();
                end = j + d.len_utf8();
            }
        } else if is_word_char(c) {
            while let Some(&(j, d)) = chars.peek() {
                if is_word_char(d) && !is_unspaced_script(d) {
                    chars.next();
                    end = j + d.len_utf8();
                    continue;
                }
                // An apostrophe or hyphen joins two word pieces: O'Sullivan, Al-Masri, don't.
                if matches!(d, '\'' | '’' | '-') {
                    let rest = &text[j + d.len_utf8()..];
                    if rest.chars().next().is_some_and(|n| n.is_alphabetic()) {
                        chars.next();
                        end = j + d.len_utf8();
                        continue;
                    }
                }
                break;
            }
        }
        out.push(Token {
            start: i,
            end,
            after_newline: newline,
        });
        newline = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(t: &str) -> Vec<&str> {
        tokenize(t).iter().map(|k| &t[k.start..k.end]).collect()
    }

    #[test]
    fn words_keep_inner_apostrophes_and_hyphens_and_split_punctuation() {
        assert_eq!(
            words("Hi, I'm Siobhán O'Sullivan-Ní Bhriain (12b Rue d’Alsace)."),
            vec![
                "Hi",
                ",",
                "I'm",
                "Siobhán",
                "O'Sullivan-Ní",
                "Bhriain",
                "(",
                "12b",
                "Rue",
                "d’Alsace",
                ")",
                "."
            ]
        );
        assert_eq!(words("a - b -- c"), vec!["a", "-", "b", "-", "-", "c"]);
        assert_eq!(
            words("see www.x.co.uk, or mail ana@x.io"),
            vec!["see", "www.x.co.uk,", "or", "mail", "ana@x.io"]
        );
    }

    #[test]
    fn newlines_are_marked_and_cjk_runs_split() {
        let t = "Name: Ana\nCity: Porto";
        let toks = tokenize(t);
        assert!(!toks[2].after_newline);
        assert!(toks[3].after_newline);
        assert_eq!(words("我叫王文辉。"), vec!["我叫", "王文", "辉", "。"]);
    }
}
