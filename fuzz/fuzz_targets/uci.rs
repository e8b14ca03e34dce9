//! The UCI parser and the config validation on arbitrary text: never a
//! panic, every diagnostic points at a line of the file, and a config with
//! errors is never handed out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ntpgate::config::{self, Severity};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.matches('\n').count() + 1;
    let loaded = config::parse(text, "fuzz");
    let mut errors = 0;
    for d in &loaded.diagnostics {
        assert!(d.line >= 1 && d.line <= lines, "line {} of {lines}: {d}", d.line);
        if d.severity == Severity::Error {
            errors += 1;
        }
    }
    assert_eq!(loaded.config.is_some(), errors == 0);
});
