//! Logging: one line per event, each with its own priority.
//!
//! In the foreground the lines go to stderr, led by their level. Under
//! procd the daemon logs to syslog itself (`ntpgate run --syslog`): procd
//! records everything a service writes to stderr at LOG_ERR (procd's
//! `service/instance.c`), which would make every line an error in
//! `logread`. A syslog line is `<PRI>ntpgate[PID]: message`, facility
//! daemon, which OpenWrt's logd (and any syslogd) reads from `/dev/log`.

use std::fmt;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
    Notice,
    Info,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Notice => "notice",
            Level::Info => "info",
        }
    }

    /// The syslog severity (RFC 5424: err 3, warning 4, notice 5, info 6).
    fn severity(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warning => 4,
            Level::Notice => 5,
            Level::Info => 6,
        }
    }
}

/// LOG_DAEMON.
const FACILITY_DAEMON: u8 = 3;

/// The syslog socket, once [`to_syslog`] chose it.
struct Syslog {
    path: PathBuf,
    socket: Option<UnixDatagram>,
}

static SYSLOG: OnceLock<Mutex<Syslog>> = OnceLock::new();

/// From now on, log to the syslog socket at `path` (normally `/dev/log`).
/// A line that cannot be sent there (no syslog daemon, or it restarts)
/// goes to stderr instead, so nothing is lost.
pub fn to_syslog(path: PathBuf) {
    let _ = SYSLOG.set(Mutex::new(Syslog { path, socket: None }));
}

fn syslog_line(level: Level, args: fmt::Arguments<'_>) -> String {
    format!(
        "<{}>ntpgate[{}]: {args}",
        FACILITY_DAEMON * 8 + level.severity(),
        std::process::id()
    )
}

impl Syslog {
    fn send(&mut self, line: &[u8]) -> bool {
        // One reconnection: logd restarts, and its socket is a new one.
        for _ in 0..2 {
            if self.socket.is_none() {
                self.socket = UnixDatagram::unbound()
                    .and_then(|s| s.connect(&self.path).map(|()| s))
                    .ok();
            }
            match &self.socket {
                Some(s) if s.send(line).is_ok() => return true,
                _ => self.socket = None,
            }
        }
        false
    }
}

/// Write one log line. A line is written with a single call so that lines
/// from different tasks never interleave.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    if let Some(syslog) = SYSLOG.get() {
        let line = syslog_line(level, args);
        let mut syslog = syslog.lock().unwrap_or_else(|p| p.into_inner());
        if syslog.send(line.as_bytes()) {
            return;
        }
    }
    let line = format!("{}: {args}\n", level.label());
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! warning {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warning, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! notice {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Notice, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_lines_carry_facility_daemon_and_the_level() {
        let pid = std::process::id();
        for (level, pri) in [
            (Level::Error, 27),
            (Level::Warning, 28),
            (Level::Notice, 29),
            (Level::Info, 30),
        ] {
            assert_eq!(
                syslog_line(level, format_args!("serving NTP on [::]:123")),
                format!("<{pri}>ntpgate[{pid}]: serving NTP on [::]:123")
            );
        }
    }
}
