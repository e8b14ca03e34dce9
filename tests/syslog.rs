//! Under procd the daemon logs to syslog itself (`run --syslog`, which the
//! init script passes), each line at its own priority: procd records a
//! service's stderr at LOG_ERR (procd `service/instance.c`; seen under the
//! real procd as `daemon.err ntpgate[224]: notice: serving NTP on ...`).
//!
//! The stand-in for logd's `/dev/log` is a datagram socket that keeps what
//! arrives, as logd (ubox `log/syslog.c`) reads it: one datagram per line,
//! `<PRI>` first (facility * 8 + severity), then the message.

mod common;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The daemon, killed if the test fails before it stops it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Logd {
    socket: UnixDatagram,
    lines: Vec<String>,
}

impl Logd {
    fn start(path: &std::path::Path) -> Logd {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Logd {
            socket,
            lines: Vec::new(),
        }
    }

    /// Read until a line contains `text`, for up to 10 s.
    fn wait_for(&mut self, text: &str) -> String {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        while start.elapsed() < Duration::from_secs(10) {
            if let Some(line) = self.lines.iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.lines
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        panic!("no syslog line with {text:?}; got {:#?}", self.lines);
    }
}

#[test]
fn under_procd_each_line_reaches_syslog_with_its_own_priority() {
    let dir = scratch_dir();
    let log_socket = dir.join("log");
    let mut logd = Logd::start(&log_socket);
    let port = free_port();
    let config = dir.join("ntpgate.conf");
    let good = format!(
        "config server\n\tlist listen '127.0.0.1'\n\toption port '{port}'\n\toption local_stratum '3'\n"
    );
    std::fs::write(&config, &good).unwrap();
    let mut daemon = Running(
        Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--syslog")
            .arg(&log_socket)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = daemon.0.id();
    let ident = format!("ntpgate[{pid}]: ");
    // facility daemon (3): err 27, warning 28, notice 29, info 30.
    let serving = logd.wait_for("serving NTP on 127.0.0.1");
    assert!(
        serving.starts_with(&format!("<29>{ident}serving NTP on")),
        "{serving}"
    );
    let lab = logd.wait_for("local_stratum serves this router's own clock");
    assert!(lab.starts_with(&format!("<28>{ident}")), "{lab}");

    // A broken config on SIGHUP: errors.
    std::fs::write(&config, "config server\n\toption port 'x'\n").unwrap();
    run_ok(Command::new("kill").args(["-HUP", &pid.to_string()]));
    let refused = logd.wait_for("reload refused");
    assert!(refused.starts_with(&format!("<27>{ident}")), "{refused}");
    let why = logd.wait_for("port: 'x'");
    assert!(why.starts_with(&format!("<27>{ident}")), "{why}");
    // The same config again: an info line.
    std::fs::write(&config, &good).unwrap();
    run_ok(Command::new("kill").args(["-HUP", &pid.to_string()]));
    let unchanged = logd.wait_for("configuration unchanged");
    assert!(
        unchanged.starts_with(&format!("<30>{ident}")),
        "{unchanged}"
    );

    // logd gone: nothing is lost, the lines go to stderr.
    drop(logd);
    std::fs::remove_file(&log_socket).unwrap();
    // (The counters are logged on SIGUSR1 and again at the stop.)
    run_ok(Command::new("kill").args(["-USR1", &pid.to_string()]));
    run_ok(Command::new("kill").args(["-TERM", &pid.to_string()]));
    assert!(daemon.0.wait().unwrap().success());
    let mut stderr = String::new();
    daemon
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    // While syslog was there, nothing went to stderr (procd's LOG_ERR).
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("notice: counters: received=0"),
        "{stderr}"
    );
    assert!(stderr.contains("notice: stopped"), "{stderr}");
}
