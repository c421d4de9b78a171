//! Collects the diagnostics of one load, attaching the profile line each one points at.

use crate::diagnostics::{Diagnostic, Diagnostics, Severity};

use super::raw::Sp;

/// A place in the profile: its path and 1-based (line, column); (0, 0) when it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
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

    /// The place of a list item written as `- key: value`: the loader marks a block mapping at
    /// the `:` of its first key, but readers look for the item at the key itself.
    pub fn item_at(&self, at: At) -> At {
        let Some(line) = at.line.checked_sub(1).and_then(|i| self.lines.get(i)) else {
            return at;
        };
        let indent = line.len() - line.trim_start().len();
        let key_column = indent + 3; // just after `- `, 1-based
        let Some(rest) = line.get(indent..).and_then(|r| r.strip_prefix("- ")) else {
            return at;
        };
        if at.column <= key_column {
            return at;
        }
        // The mark sits on the `:` after the first key.
        let first_key: String = rest.chars().take(at.column + 1 - key_column).collect();
        if first_key.ends_with(':') {
            At {
                column: key_column,
                ..at
            }
        } else {
            at
        }
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
