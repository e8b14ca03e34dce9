//! What is wrong with a config, and where: each problem with the file and
//! line it comes from, as an error (the config is refused) or a warning.

use std::fmt;

use super::network::Interfaces;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}: {level}: {}", self.file, self.line, self.message)
    }
}

/// Collects the diagnostics of one file while it is validated.
pub(super) struct Report<'a> {
    pub(super) file: &'a str,
    pub(super) interfaces: &'a Interfaces,
    pub(super) diagnostics: Vec<Diagnostic>,
}

impl Report<'_> {
    pub(super) fn push(&mut self, line: usize, severity: Severity, message: String) {
        self.diagnostics.push(Diagnostic {
            file: self.file.into(),
            line,
            severity,
            message,
        });
    }

    pub(super) fn error(&mut self, line: usize, message: String) {
        self.push(line, Severity::Error, message);
    }

    pub(super) fn warning(&mut self, line: usize, message: String) {
        self.push(line, Severity::Warning, message);
    }
}
