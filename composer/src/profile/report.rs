//! Collects the diagnostics of one load, attaching the profile line each one points at.

use crate::diagnostics::{Diagnostic, Diagnostics, Severity};

use super::raw::Sp;

/// A place in the profile: its path and 1-based (line, column); (0, 0) when it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct At {
    pub path: String,
    pub line: usize,
    pub column: usize,
}

impl At {
    pub fn new(path: impl Into<String>, (line, column): (usize, usize)) -> Self {
        Self {
            path: path.into(),
            line,
            column,
        }
    }

    /// The place of a value written at `path`.
    pub fn of<T>(path: impl Into<String>, value: &Sp<T>) -> Self {
        Self::new(path, value.position())
    }

    /// A key inside this place, at the same position (used where the key itself was not written).
    pub fn child(&self, key: &str) -> Self {
        Self {
            path: format!("{}.{key}", self.path),
            ..self.clone()
        }
    }
}

pub(crate) struct Report<'a> {
    origin: &'a str,
    lines: Vec<&'a str>,
    found: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    pub fn new(origin: &'a str, text: &'a str) -> Self {
        Self {
            origin,
            lines: text.lines().collect(),
            found: Vec::new(),
        }
    }

    pub fn error(&mut self, at: &At, message: impl Into<String>) {
        self.push(Severity::Error, at, message.into());
    }

    pub fn warn(&mut self, at: &At, message: impl Into<String>) {
        self.push(Severity::Warning, at, message.into());
    }

    fn push(&mut self, severity: Severity, at: &At, message: String) {
        let line_text = match at.line {
            0 => None,
            n => self.lines.get(n - 1).map(|l| l.to_string()),
        };
        self.found.push(Diagnostic {
            severity,
            path: at.path.clone(),
            message,
            origin: self.origin.to_string(),
            line: at.line,
            column: at.column,
            line_text,
        });
    }

    pub fn error_count(&self) -> usize {
        self.found.iter().filter(|d| d.is_error()).count()
    }

    /// Everything found, in profile order.
    pub fn into_diagnostics(self) -> Diagnostics {
        let mut all = Diagnostics(self.found);
        all.sort();
        all
    }
}
