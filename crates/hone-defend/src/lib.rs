//! hone-defend: defences before training — the label-issue finder (out-of-fold probabilities + confident
//! learning) and the poisoning scan (insertion triggers by context test, spectral signatures). Pure
//! functions over texts and labels; no store, no terminal.

pub mod label_issues;
pub mod poison;
