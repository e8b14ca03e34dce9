//! `ntpgate query`: one NTP exchange with a server, printed like ntpdig.
//! The IO shell around [`ntp::client`](crate::ntp::client).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use crate::clock::SystemClock;
use crate::ntp::client::{Exchange, Sample};
use crate::ntp::clock::Clock;
use crate::ntp::packet::{self, Leap, NtpTimestamp, UnixNanos};

/// Resolve `HOST`, `HOST:PORT`, `IPV6` or `[IPV6]:PORT`; the port defaults to 123.
pub fn resolve(target: &str) -> Result<Vec<SocketAddr>, String> {
    let (host, port) = crate::net::parse_host_port(target, 123)?;
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{target}': {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("'{target}' has no address"));
    }
    Ok(addrs)
}

/// Exchange one request with `server`; waits up to `timeout`.
pub fn exchange(server: SocketAddr, timeout: Duration) -> Result<(Sample, UnixNanos), String> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(bind).map_err(|e| format!("cannot open a socket: {e}"))?;
    socket
        .connect(server)
        .map_err(|e| format!("cannot reach {server}: {e}"))?;
    let clock = SystemClock;
    let t1 = clock.now();
    // The clock's time as the transmit timestamp, as ntpdig sends it.
    let (exchange, request) = Exchange::start(t1, NtpTimestamp::from_unix(t1), 6);
    socket
        .send(&request)
        .map_err(|e| format!("cannot send to {server}: {e}"))?;
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + timeout;
    let late = || {
        format!(
            "no answer from {server} within {:.1} s",
            timeout.as_secs_f64()
        )
    };
    loop {
        // The wait is for `timeout` in all, whatever comes in between.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| format!("socket: {e}"))?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            // A signal cut the wait short (a child of the daemon's exiting,
            // a SIGHUP): not an answer, and not the lack of one.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => late(),
                    _ => format!("no answer from {server}: {e}"),
                });
            }
        };
        let t4 = clock.now();
        match exchange.receive(&buf[..n], t4) {
            Ok(sample) => return Ok((sample, t4)),
            Err(e) if e.ends_exchange() => return Err(format!("{server}: {e}")),
            // Not the answer (late, stray, malformed): keep waiting for it.
            Err(_) => continue,
        }
    }
}

/// The report printed for one sample.
pub fn describe(server: SocketAddr, sample: &Sample, received: UnixNanos) -> String {
    let r = &sample.reply;
    let mut out = String::new();
    let _ = writeln!(out, "server     {server}");
    let _ = writeln!(out, "stratum    {}", r.stratum);
    let _ = writeln!(out, "refid      {}", r.refid.display(r.stratum));
    let _ = writeln!(out, "leap       {} ({})", r.leap as u8, r.leap.describe());
    let _ = writeln!(out, "version    {}", r.version);
    let _ = writeln!(out, "offset     {:+.6} s", sample.offset);
    let _ = writeln!(out, "delay      {:.6} s", sample.delay);
    let _ = writeln!(
        out,
        "root delay {:.6} s",
        packet::short_to_secs(r.root_delay)
    );
    let _ = writeln!(
        out,
        "root disp  {:.6} s",
        packet::short_to_secs(r.root_dispersion)
    );
    let _ = writeln!(out, "precision  2^{} s", r.precision);
    let _ = writeln!(out, "poll       2^{} s", r.poll);
    let reference = if r.reference == NtpTimestamp::ZERO {
        "never".to_string()
    } else {
        format_utc(r.reference.to_unix_near(received))
    };
    let _ = writeln!(out, "reference  {reference}");
    let _ = write!(
        out,
        "time       {}",
        format_utc(sample.server_time(received))
    );
    out
}

/// Run `ntpgate query`. Exit codes: 0 synchronised answer, 1 no usable
/// answer, 2 an answer from an unsynchronised server.
pub fn run(target: &str, timeout: Duration) -> i32 {
    let addrs = match resolve(target) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ntpgate query: {e}");
            return 1;
        }
    };
    let mut last_error = String::new();
    for server in addrs {
        match exchange(server, timeout) {
            Ok((sample, received)) => {
                // A closed pipe (`| head`) is not an error worth a panic.
                let _ = writeln!(std::io::stdout(), "{}", describe(server, &sample, received));
                if sample.reply.leap == Leap::Unsynchronised {
                    eprintln!(
                        "ntpgate query: {server} is not synchronised (leap 3): do not use its time"
                    );
                    return 2;
                }
                return 0;
            }
            Err(e) => last_error = e,
        }
    }
    eprintln!("ntpgate query: {last_error}");
    1
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`, from days since 1970 by the civil-from-days
/// algorithm (H. Hinnant), to avoid a date crate for one line of output.
pub fn format_utc(t: UnixNanos) -> String {
    let secs = t.0.div_euclid(1_000_000_000);
    let micros = t.0.rem_euclid(1_000_000_000) / 1000;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::thread::JoinHandleExt;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(UnixNanos(0)), "1970-01-01T00:00:00.000000Z");
        // The NTP era rollover.
        assert_eq!(
            format_utc(UnixNanos(2_085_978_496_000_000_000)),
            "2036-02-07T06:28:16.000000Z"
        );
        assert_eq!(
            format_utc(UnixNanos(951_782_400_500_000_000)),
            "2000-02-29T00:00:00.500000Z"
        );
    }

    #[test]
    fn targets() {
        assert_eq!(
            resolve("127.0.0.1").unwrap(),
            ["127.0.0.1:123".parse().unwrap()]
        );
        assert_eq!(
            resolve("127.0.0.1:999").unwrap(),
            ["127.0.0.1:999".parse().unwrap()]
        );
        assert_eq!(resolve("::1").unwrap(), ["[::1]:123".parse().unwrap()]);
        assert_eq!(resolve("[::1]:5").unwrap(), ["[::1]:5".parse().unwrap()]);
        assert!(resolve("[::1").is_err());
    }

    extern "C" fn ignore(_: libc::c_int) {}

    #[test]
    fn a_signal_during_the_wait_is_not_a_failed_query() {
        // A handler without SA_RESTART, as the daemon's runtime installs
        // for SIGCHLD: a socket wait with a timeout returns EINTR when the
        // signal arrives (signal(7)).
        // SAFETY: a handler that does nothing, for a signal nothing else
        // in these tests uses.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore as *const () as libc::sighandler_t;
            assert_eq!(
                libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()),
                0
            );
        }
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = server.local_addr().unwrap();
        let client = std::thread::spawn(move || exchange(address, Duration::from_secs(2)));
        let mut request = [0u8; 1024];
        let (_, from) = server.recv_from(&mut request).unwrap();
        // Well inside its wait for the answer.
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: the client thread is alive: it waits for our answer.
        assert_eq!(
            unsafe { libc::pthread_kill(client.as_pthread_t() as libc::pthread_t, libc::SIGUSR2) },
            0
        );
        std::thread::sleep(Duration::from_millis(200));
        // A server's answer: mode 4, stratum 2, our transmit as its origin.
        let now = NtpTimestamp::from_unix(SystemClock.now()).0.to_be_bytes();
        let mut reply = [0u8; 48];
        reply[0] = (4 << 3) | 4;
        reply[1] = 2;
        reply[24..32].copy_from_slice(&request[40..48]);
        for at in [16, 32, 40] {
            reply[at..at + 8].copy_from_slice(&now);
        }
        server.send_to(&reply, from).unwrap();
        let (sample, _) = client.join().unwrap().expect("the answer after the signal");
        assert_eq!(sample.reply.stratum, 2);
    }
}
