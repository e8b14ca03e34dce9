//! Shared harness for the integration tests: the daemon as a child process,
//! raw NTP packets, network namespaces, and the real peers (chronyd, ntpdig).
#![allow(dead_code)] // each test binary uses a different part of it

pub mod lan;
pub mod ubusd;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ntpgate");

static UNIQUE: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh scratch directory under the target dir.
pub fn scratch_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique("t"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A UDP port nobody uses right now on loopback.
pub fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = s.local_addr().unwrap().port();
    // Also free on ::1, since tests listen on both.
    match UdpSocket::bind(("::1", port)) {
        Ok(_) => port,
        Err(_) => free_port(),
    }
}

/// Fail with what to install when a peer program is missing.
pub fn require(program: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{program} is not installed: the test command installs Debian's {package} (apt-get install {package})"
    );
}

pub fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "{what} needs root (network namespaces); run the test command as root, as CI does"
    );
}

/// The daemon under test, with its stderr collected.
pub struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
    /// Says when the reader thread has read the log to its end.
    drained: std::sync::mpsc::Receiver<()>,
    pub config_path: PathBuf,
}

impl Daemon {
    /// Start `ntpgate run` with this config text; wait until it serves on
    /// `sockets` addresses.
    pub fn start(config: &str, sockets: usize) -> Daemon {
        Self::start_with(Command::new(BIN), config, sockets)
    }

    /// As [`Daemon::start`], from a prepared command (to run it in a
    /// namespace, say): `run --config FILE` is appended.
    pub fn start_with(cmd: Command, config: &str, sockets: usize) -> Daemon {
        Self::start_with_files(cmd, config, sockets, &[])
    }

    /// As [`Daemon::start_with`], with other files beside the config (the
    /// `network` config, say).
    pub fn start_with_files(
        cmd: Command,
        config: &str,
        sockets: usize,
        files: &[(&str, &str)],
    ) -> Daemon {
        let dir = scratch_dir();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let config_path = dir.join("ntpgate.conf");
        std::fs::write(&config_path, config).unwrap();
        Self::start_with_path(cmd, &config_path, sockets)
    }

    /// As [`Daemon::start_with`], with a config file already in place.
    pub fn start_with_path(cmd: Command, config_path: &Path, sockets: usize) -> Daemon {
        let config = std::fs::read_to_string(config_path).unwrap();
        assert!(
            !config.contains("upstream") || config.contains("option clock_control '0'"),
            "a test config with upstreams must set option clock_control '0'"
        );
        Self::spawn(cmd, config_path, sockets)
    }

    /// A daemon with clock control on that cannot steer any clock: it runs
    /// as `nobody`, with no capability and CAP_SYS_TIME gone from its
    /// bounding set (so that nothing it execs can regain it), so every
    /// clock_adjtime it tries fails. Needs root to drop into that.
    pub fn start_unable_to_steer(config: &str, sockets: usize) -> Daemon {
        require_root("dropping CAP_SYS_TIME for good");
        let mut cmd = Command::new(require("setpriv", "util-linux"));
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--bounding-set=-sys_time",
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--no-new-privs",
            "--",
            BIN,
        ]);
        let path = scratch_dir().join("ntpgate.conf");
        std::fs::write(&path, config).unwrap();
        Self::spawn(cmd, &path, sockets)
    }

    fn spawn(mut cmd: Command, config_path: &Path, sockets: usize) -> Daemon {
        // The host's clock and network are not ours: a test daemon never
        // steers the clock and never falls back to the default (public)
        // upstreams.
        let config = std::fs::read_to_string(config_path).unwrap();
        assert!(
            config.contains("local_stratum") || config.contains("upstream"),
            "a test config must name its upstreams (on loopback) or use local_stratum"
        );
        let config_path = config_path.to_path_buf();
        cmd.arg("run").arg("--config").arg(&config_path);
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ntpgate");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        let (done, drained) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
            let _ = done.send(());
        });
        let d = Daemon {
            child,
            log,
            drained,
            config_path,
        };
        d.wait_for_log(
            |l| l.matches("serving NTP on").count() >= sockets,
            "the daemon to bind",
        );
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn wait_for_log(&self, done: impl Fn(&str) -> bool, what: &str) {
        within_every(Duration::from_millis(20), Duration::from_secs(15), || {
            done(&self.log())
        })
        .unwrap_or_else(|| panic!("timed out waiting for {what}; daemon log:\n{}", self.log()));
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Ask for the daemon's state (SIGUSR1) and return the new log line
    /// that starts with `prefix`.
    pub fn usr1_line(&self, prefix: &str) -> String {
        self.usr1_lines(prefix, 1).remove(0)
    }

    /// Ask for the daemon's state (SIGUSR1) and return the `n` new log
    /// lines that start with `prefix` (one per upstream, say).
    pub fn usr1_lines(&self, prefix: &str, n: usize) -> Vec<String> {
        let count = |log: &str| log.lines().filter(|l| l.starts_with(prefix)).count();
        let before = count(&self.log());
        self.signal("USR1");
        self.wait_for_log(|l| count(l) >= before + n, prefix);
        let log = self.log();
        log.lines()
            .filter(|l| l.starts_with(prefix))
            .skip(before)
            .take(n)
            .map(str::to_string)
            .collect()
    }

    /// Ask for the counters (SIGUSR1) and parse the line the daemon logs.
    pub fn counters(&self) -> HashMap<String, u64> {
        parse_counters(&self.usr1_line("notice: counters:"))
    }

    /// SIGTERM, and the exit status if the daemon is gone within `limit`.
    pub fn stop_within(mut self, limit: Duration) -> Option<(std::process::ExitStatus, String)> {
        self.signal("TERM");
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                let _ = self.drained.recv_timeout(Duration::from_secs(5));
                return Some((status, self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.signal("TERM");
        let status = self.child.wait().unwrap();
        // The reader thread has the rest of the log once the pipe closes
        // (nft, which the daemon may have started, could hold it a while).
        let _ = self.drained.recv_timeout(Duration::from_secs(5));
        (status, self.log())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn parse_counters(line: &str) -> HashMap<String, u64> {
    line.split_once("counters:")
        .expect("a counters line")
        .1
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("key=value");
            (k.to_string(), v.parse().expect("number"))
        })
        .collect()
}

/// A client request: version, mode, poll, transmit timestamp.
pub fn request(version: u8, mode: u8, poll: i8, transmit: u64) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    p[0] = (version << 3) | mode;
    p[2] = poll as u8;
    p[40..48].copy_from_slice(&transmit.to_be_bytes());
    p
}

/// Send `packet` from `from` (an address on this machine) to `to`; the
/// reply, or `None` after `wait`.
pub fn exchange(
    from: SocketAddr,
    to: SocketAddr,
    packet: &[u8],
    wait: Duration,
) -> Option<Vec<u8>> {
    let s = UdpSocket::bind(from).expect("bind client");
    s.set_read_timeout(Some(wait)).unwrap();
    s.send_to(packet, to).expect("send");
    let mut buf = [0u8; 2048];
    match s.recv_from(&mut buf) {
        Ok((n, src)) => {
            assert_eq!(src, to, "reply from the address the request went to");
            Some(buf[..n].to_vec())
        }
        Err(_) => None,
    }
}

/// The wall clock as an NTP timestamp (for checking reply timestamps).
pub fn ntp_now() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let secs = (d.as_secs() + 2_208_988_800) & 0xffff_ffff;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

pub fn u64_at(p: &[u8], i: usize) -> u64 {
    u64::from_be_bytes(p[i..i + 8].try_into().unwrap())
}

/// A network namespace that exists for the life of the value.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        require_root("a network namespace");
        require("ip", "iproute2");
        let name = unique("ntpgate-t");
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        run_ok(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
        Netns { name }
    }

    /// Run `f` on a thread that has entered the namespace (setns affects
    /// only the calling thread): its sockets live in the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                    let entered = unsafe {
                        libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET)
                    };
                    assert_eq!(
                        entered,
                        0,
                        "setns {path}: {}",
                        std::io::Error::last_os_error()
                    );
                    f()
                })
                .join()
                .expect("the thread in the namespace")
        })
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Config lines for upstreams that never answer: nothing listens on the
/// discard port of loopback.
pub const SILENT_UPSTREAM: &str = "\tlist upstream '127.0.0.1:9'\n\toption clock_control '0'\n";

/// A chronyd that serves its local clock on a loopback port and never
/// touches this machine's clock (-x).
pub struct Chronyd {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

/// Start `chronyd -x` (it never touches the clock) from `cmd` (plain, or in
/// a namespace), serving its local clock at `stratum` on `port`, with its
/// own pid, drift and log files; `lines` are added to its config.
pub fn spawn_chronyd(mut cmd: Command, port: u16, stratum: u8, lines: &str) -> (Child, PathBuf) {
    let dir = scratch_dir();
    let conf = dir.join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\n{lines}local stratum {stratum}\ncmdport 0\nbindcmdaddress /\npidfile {}\ndriftfile {}\n",
            dir.join("chronyd.pid").display(),
            dir.join("drift").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("chronyd.log")).unwrap();
    let child = cmd
        .args(["-x", "-d", "-u", "root", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn chronyd");
    (child, dir)
}

impl Chronyd {
    pub fn server(stratum: u8) -> Chronyd {
        let chronyd = require("chronyd", "chrony");
        let port = free_port();
        let (child, dir) = spawn_chronyd(
            Command::new(chronyd),
            port,
            stratum,
            "bindaddress 127.0.0.1\nallow 127.0.0.0/8\n",
        );
        // Owned from here, so that a failure below still ends it.
        let chronyd = Chronyd { child, port, dir };
        let to: SocketAddr = ([127, 0, 0, 1], port).into();
        let serving = within(Duration::from_secs(10), || {
            let ask = request(4, 3, 6, 1);
            exchange(
                "127.0.0.1:0".parse().unwrap(),
                to,
                &ask,
                Duration::from_millis(200),
            )
            .is_some()
        });
        if serving.is_none() {
            let log = std::fs::read_to_string(chronyd.dir.join("chronyd.log")).unwrap_or_default();
            panic!("chronyd did not start serving on port {port}:\n{log}");
        }
        chronyd
    }
}

impl Drop for Chronyd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `chronyd -Q` against `server` and return (exit ok, stderr, log file text).
pub fn chronyd_client(server_line: &str, log: &str, timeout_s: u32) -> (bool, String, String) {
    let chronyd = require("chronyd", "chrony");
    let dir = scratch_dir();
    let out = Command::new(chronyd)
        .args([
            "-Q",
            "-u",
            "root",
            "-t",
            &timeout_s.to_string(),
            server_line,
        ])
        .arg(format!("logdir {}", dir.display()))
        .arg(format!("log {log}"))
        .output()
        .expect("run chronyd -Q");
    // Raw or not, chrony writes measurements.log.
    let log_text = std::fs::read_to_string(dir.join("measurements.log")).unwrap_or_default();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        log_text,
    )
}

/// Data rows of a chrony measurements log, split into columns.
pub fn rows(log: &str) -> Vec<Vec<String>> {
    log.lines()
        .filter(|l| l.starts_with("20"))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Poll `done` every 50 ms for up to `limit`; how long it took.
pub fn within(limit: Duration, done: impl FnMut() -> bool) -> Option<Duration> {
    within_every(Duration::from_millis(50), limit, done)
}

/// [`within`], polling every `every` (for checks that cost the daemon
/// something, such as a SIGUSR1).
pub fn within_every(
    every: Duration,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(every);
    }
    None
}

/// The number after `key=` in a log line.
pub fn field(line: &str, key: &str) -> u64 {
    line.split(&format!("{key}="))
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

/// An NTP server on loopback that answers as told: its time `offset`
/// seconds from this machine's, its stratum, refid and leap, and before
/// each answer the `junk` datagrams (what a hostile or broken peer might
/// send from the same address). It never touches the clock.
pub struct FakeUpstream {
    pub port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Clone)]
pub struct FakeAnswer {
    pub offset: f64,
    pub stratum: u8,
    pub refid: [u8; 4],
    pub leap: u8,
    pub junk: Vec<Vec<u8>>,
}

impl FakeAnswer {
    pub fn good() -> FakeAnswer {
        FakeAnswer {
            offset: 0.0,
            stratum: 1,
            refid: *b"GPS\0",
            leap: 0,
            junk: Vec::new(),
        }
    }
}

impl FakeUpstream {
    pub fn start(answer: FakeAnswer) -> FakeUpstream {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if n < 48 {
                    continue;
                }
                for j in &answer.junk {
                    let _ = socket.send_to(j, from);
                }
                let shift = (answer.offset * 4_294_967_296.0) as i64 as u64;
                let now = ntp_now().wrapping_add(shift);
                let mut reply = [0u8; 48];
                reply[0] = (answer.leap << 6) | (4 << 3) | 4;
                reply[1] = answer.stratum;
                reply[2] = buf[2];
                reply[3] = (-20i8) as u8;
                reply[8..12].copy_from_slice(&0x0000_0010u32.to_be_bytes());
                reply[12..16].copy_from_slice(&answer.refid);
                reply[16..24].copy_from_slice(&(now - (1 << 32)).to_be_bytes());
                reply[24..32].copy_from_slice(&buf[40..48]);
                reply[32..40].copy_from_slice(&now.to_be_bytes());
                reply[40..48].copy_from_slice(&now.to_be_bytes());
                let _ = socket.send_to(&reply, from);
            }
        });
        FakeUpstream { port, stop }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
