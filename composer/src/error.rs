//! The compose error: what the stages after the profile can report. `Invalid` is the user's to
//! fix (exit 2) and points into the profile where it can; the rest are I/O failures or bugs.

use crate::model;

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The profile asks for something this platform cannot do: the user's to fix (exit 2).
    /// `line`/`column` point into the profile (0 when unknown).
    #[error("{path}: {message}")]
    Invalid {
        path: String,
        message: String,
        line: usize,
        column: usize,
    },
    #[error("cannot read the agent binary {path}: {source}")]
    AgentRead {
        path: String,
        source: std::io::Error,
    },
    /// A file the profile lists for the bundle (e.g. `platforms.ipxe.assets`) cannot be read.
    #[error("cannot read {path}: {source}")]
    AssetRead {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the agent binary {path} changed after it was hashed (sha512 {found}, expected {expected})"
    )]
    AgentChanged {
        path: String,
        found: String,
        expected: String,
    },
    #[error("template {name}: {source:#}")]
    Template {
        name: String,
        source: minijinja::Error,
    },
    /// A bug in molten (e.g. two parts claiming one output path).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ComposeError {
    pub fn invalid(path: &str, message: impl Into<String>) -> Self {
        ComposeError::Invalid {
            path: path.to_string(),
            message: message.into(),
            line: 0,
            column: 0,
        }
    }

    /// Invalid input at a value whose place in the profile is known (e.g. a node).
    pub fn invalid_at(origin: &model::Origin, message: impl Into<String>) -> Self {
        ComposeError::Invalid {
            path: origin.path.clone(),
            message: message.into(),
            line: origin.line,
            column: origin.column,
        }
    }

    /// True when the input is at fault (the CLI exits 2), false for other failures.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, ComposeError::Invalid { .. })
    }
}
