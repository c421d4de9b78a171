//! Errors and warnings that point into the user's profile, printed like compiler messages:
//!
//! ```text
//! error[$.nodes[2].ip]: 10.0.0.10 is already used by nodes[0]
//!   --> profiles/dev.yaml:14:9
//!    |
//! 14 |     ip: 10.0.0.10
//!    |         ^
//! ```
//!
//! A diagnostic without a position (line 0, e.g. a value that was never written) prints only the
//! first two lines, with the arrow naming just the file, indented as for a two-digit line.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Where in the document, JSON-path style: `$.nodes[2].ip`.
    pub path: String,
    pub message: String,
    /// What the arrow names: usually the profile's file name.
    pub origin: String,
    /// 1-based; 0 when the problem has no position in the file.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The profile line at `line`, shown under the arrow.
    pub line_text: Option<String>,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}[{}]: {}",
            self.severity.label(),
            self.path,
            self.message
        )?;
        if self.line == 0 {
            // Indented as for a two-digit line (most profile lines), so arrows line up.
            return write!(f, "  --> {}", self.origin);
        }
        let number = self.line.to_string();
        let pad = " ".repeat(number.len());
        write!(f, "{pad}--> {}:{}:{}", self.origin, self.line, self.column)?;
        if let Some(text) = &self.line_text {
            // Tabs would shift the caret; YAML forbids them in indentation anyway.
            let shown = text.replace('\t', " ");
            let caret_at = " ".repeat(self.column.saturating_sub(1));
            write!(f, "\n{pad} |\n{number} | {shown}\n{pad} | {caret_at}^")?;
        }
        Ok(())
    }
}

/// Every problem a stage found, in the order of the profile (positionless ones last).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Orders by position in the file; stable, so equal positions keep the order found.
    pub fn sort(&mut self) {
        self.0.sort_by_key(|d| (d.line == 0, d.line, d.column));
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for Diagnostics {
    /// One block per diagnostic, separated by a blank line, no trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(line: usize) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            path: "$.nodes[2].ip".into(),
            message: "10.0.0.10 is already used by nodes[0]".into(),
            origin: "profiles/dev.yaml".into(),
            line,
            column: 9,
            line_text: Some("    ip: 10.0.0.10".into()),
        }
    }

    #[test]
    fn block_points_at_the_column() {
        assert_eq!(
            sample(14).to_string(),
            "error[$.nodes[2].ip]: 10.0.0.10 is already used by nodes[0]\n  \
             --> profiles/dev.yaml:14:9\n   |\n14 |     ip: 10.0.0.10\n   |         ^"
        );
    }

    #[test]
    fn positionless_names_only_the_file() {
        let mut d = sample(0);
        d.severity = Severity::Warning;
        assert_eq!(
            d.to_string(),
            "warning[$.nodes[2].ip]: 10.0.0.10 is already used by nodes[0]\n  --> profiles/dev.yaml"
        );
    }

    #[test]
    fn arrows_line_up_with_and_without_a_position() {
        let arrow_column = |d: Diagnostic| {
            let text = d.to_string();
            let arrow = text.lines().nth(1).unwrap().to_string();
            arrow.find("-->").unwrap()
        };
        // Profiles put almost every problem on lines 10-99: a positionless arrow lines up there.
        assert_eq!(arrow_column(sample(0)), arrow_column(sample(14)));
        assert_eq!(arrow_column(sample(0)), 2);
    }

    #[test]
    fn sorts_by_position_and_counts_errors() {
        let mut all = Diagnostics(vec![sample(0), sample(20), sample(3)]);
        all.0[1].severity = Severity::Warning;
        all.sort();
        let lines: Vec<usize> = all.iter().map(|d| d.line).collect();
        assert_eq!(lines, [3, 20, 0]);
        assert!(all.has_errors());
        assert_eq!(all.warnings().count(), 1);
        assert!(all.to_string().contains("^\n\nwarning["));
    }
}
