//! Graders for generated text: grading rules as files ([`spec`], shaped after OpenAI's public grader
//! spec), built and checked before use ([`Grader::new`]), scoring one answer for one dataset item
//! with typed errors ([`GradeError`]), and the adversarial check ([`adversarial`]) that reports a
//! grader an empty, echoed, wrongly filled or overlong answer can pass. `command` graders run an
//! external program isolated from the network and the project's files ([`command`]); `score_model`
//! and `label_model` ask a chat model behind an OpenAI-compatible endpoint ([`judge`]).

pub mod adversarial;
pub mod command;
pub mod error;
pub mod formula;
pub mod grader;
pub mod judge;
pub mod load;
pub mod metrics;
pub mod spec;

pub use error::{GradeError, Result};
pub use grader::{Grade, Grader};
pub use spec::GraderSpec;
