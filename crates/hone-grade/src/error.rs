//! Grader errors, typed: a grader that cannot be built or cannot score a sample says which grader and
//! why; an error is never a score.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum GradeError {
    /// The grader definition itself is wrong (bad field, bad regex, bad schema, unsupported metric).
    #[error("grader `{grader}`: {msg}")]
    Spec { grader: String, msg: String },
    /// `calculate_output` does not parse; `at` is the byte offset in the formula.
    #[error("grader `{grader}`: formula does not parse at byte {at}: {msg}")]
    FormulaParse {
        grader: String,
        at: usize,
        msg: String,
    },
    /// A template or formula names something that is not there (`{{ item.nope }}`, an unknown
    /// sub-grader).
    #[error("grader `{grader}`: invalid variable `{name}`{hint}")]
    InvalidVariable {
        grader: String,
        name: String,
        hint: String,
    },
    /// The sample is not what the grader reads (not JSON where `sample.output_json` is used).
    #[error("grader `{grader}`: the sample cannot be read: {msg}")]
    SampleParse { grader: String, msg: String },
    /// A `command` grader ran past its time limit and was killed.
    #[error("grader `{grader}`: the command ran past its {seconds} s limit and was killed")]
    Timeout { grader: String, seconds: f64 },
    /// A `command` grader cannot run isolated here, and the project has not opted in to running it
    /// without isolation.
    #[error(
        "grader `{grader}`: this machine cannot isolate a command grader ({why}), so hone will not run it; set `allow_unisolated_commands = true` under [policy] to run it with only its time and memory limits (it can then reach the network and write to the project)"
    )]
    NoIsolation { grader: String, why: String },
    /// A judge declined to grade (the server's `refusal`, or a content filter stopped it).
    #[error("grader `{grader}`: the judge refused: {msg}")]
    JudgeRefusal { grader: String, msg: String },
    /// A judge answered, but not with a grade hone can read (not JSON, the answer schema echoed
    /// back, a score outside the range, a label not in the list, a reply cut by the token limit).
    #[error("grader `{grader}`: the judge's reply is not a grade: {msg}")]
    JudgeParse { grader: String, msg: String },
    /// The judge's server failed: unreachable, timed out, or an HTTP error status.
    #[error("grader `{grader}`: judge server: {msg}")]
    JudgeServer { grader: String, msg: String },
    /// Scoring failed at run time (a formula dividing by zero, a non-finite reward).
    #[error("grader `{grader}`: {msg}")]
    Runtime { grader: String, msg: String },
}

pub type Result<T, E = GradeError> = std::result::Result<T, E>;
