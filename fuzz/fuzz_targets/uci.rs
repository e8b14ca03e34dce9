//! The UCI parser and the config validation on arbitrary text: never a
//! panic, every diagnostic points at a line of the file, and a config with
//! errors is never handed out. A NUL byte splits the input: before it our
//! config, after it the network config its pinholes are checked against.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ntpgate::config::network::Interfaces;
use ntpgate::config::{self, Severity};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (ours, network) = text.split_once('\0').unwrap_or((text, ""));
    let interfaces = Interfaces::parse(network, "network");
    let lines = ours.matches('\n').count() + 1;
    let loaded = config::parse(ours, "fuzz", &interfaces);
    let mut errors = 0;
    for d in &loaded.diagnostics {
        assert!(d.line >= 1 && d.line <= lines, "line {} of {lines}: {d}", d.line);
        if d.severity == Severity::Error {
            errors += 1;
        }
    }
    assert_eq!(loaded.config.is_some(), errors == 0);
});
