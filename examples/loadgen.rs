//! NTP load generator for the benchmark (scripts/bench): sends client
//! requests at a fixed rate from many loopback source addresses and ports,
//! and measures replies per second and request-to-reply latency.
//!
//!     loadgen TARGET RATE SECONDS [SOURCES]
//!
//! The send time travels in the request's transmit timestamp, which every
//! server copies into the reply's origin timestamp, so latency needs no
//! bookkeeping per request. Prints one line of key=value figures.
//! Only loopback targets are accepted.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BATCH: usize = 32;

fn usage() -> ! {
    eprintln!(
        "usage: loadgen TARGET(loopback ip:port) RATE(requests/s) SECONDS [SOURCES(default 256)]"
    );
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        usage();
    }
    let target: SocketAddr = args[0].parse().unwrap_or_else(|_| usage());
    if !target.ip().is_loopback() {
        eprintln!("loadgen: {target} is not a loopback address; this tool only loads this machine");
        std::process::exit(2);
    }
    let rate: f64 = args[1].parse().unwrap_or_else(|_| usage());
    let seconds: f64 = args[2].parse().unwrap_or_else(|_| usage());
    let sources: usize = args
        .get(3)
        .map_or(256, |s| s.parse().unwrap_or_else(|_| usage()));

    // Distinct source addresses 127.1.x.y, each with its own ephemeral port.
    let sockets: Vec<UdpSocket> = (0..sources)
        .map(|i| {
            let ip = Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
            let s = UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), 0)).expect("bind a source");
            s.connect(target).expect("connect");
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let sockets = Arc::new(sockets);
    let epoch = Instant::now();
    let done = Arc::new(AtomicBool::new(false));

    let receiver = {
        let sockets = Arc::clone(&sockets);
        let done = Arc::clone(&done);
        std::thread::spawn(move || receive(&sockets, epoch, &done))
    };

    let sent = send(&sockets, epoch, rate, Duration::from_secs_f64(seconds));
    let send_end = epoch.elapsed();
    // Let the last replies arrive.
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let mut latencies = receiver.join().unwrap();

    let received = latencies.len();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        latencies[((latencies.len() - 1) as f64 * p) as usize] as f64 / 1000.0
    };
    println!(
        "offered={rate:.0} sent={sent} received={received} lost={} send_rate={:.0} reply_rate={:.0} p50_us={:.1} p99_us={:.1} max_us={:.1}",
        sent.saturating_sub(received),
        sent as f64 / send_end.as_secs_f64(),
        received as f64 / send_end.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
}

fn request(sent_ns: u64) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = (4 << 3) | 3;
    p[2] = 6;
    p[40..48].copy_from_slice(&sent_ns.to_be_bytes());
    p
}

/// Open loop: keep the number sent equal to rate x elapsed, in batches.
fn send(sockets: &[UdpSocket], epoch: Instant, rate: f64, duration: Duration) -> usize {
    let start = epoch.elapsed();
    let mut sent = 0usize;
    let mut next_socket = 0;
    let mut packets = [[0u8; 48]; BATCH];
    loop {
        let elapsed = epoch.elapsed() - start;
        if elapsed >= duration {
            return sent;
        }
        let due = (rate * elapsed.as_secs_f64()) as usize;
        if due <= sent {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        let n = (due - sent).min(BATCH);
        let now_ns = epoch.elapsed().as_nanos() as u64;
        for p in packets.iter_mut().take(n) {
            *p = request(now_ns);
        }
        let socket = &sockets[next_socket];
        next_socket = (next_socket + 1) % sockets.len();
        sent += send_batch(socket, &mut packets[..n]);
    }
}

/// One iovec per buffer, and one mmsghdr per iovec (no names: the
/// sockets are connected).
fn message_headers<const N: usize>(
    buffers: &mut [[u8; N]],
    iovecs: &mut Vec<libc::iovec>,
) -> Vec<libc::mmsghdr> {
    *iovecs = buffers
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: N,
        })
        .collect();
    iovecs
        .iter_mut()
        .map(|iov| {
            // SAFETY: all-zero is a valid mmsghdr.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect()
}

fn send_batch(socket: &UdpSocket, packets: &mut [[u8; 48]]) -> usize {
    let mut iovecs = Vec::new();
    let mut headers = message_headers(packets, &mut iovecs);
    // SAFETY: the headers point into `packets` through `iovecs`, both alive
    // for the call.
    let n = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            headers.len() as _,
            0,
        )
    };
    n.max(0) as usize
}

/// Collect the latency of every reply until `done`.
fn receive(sockets: &[UdpSocket], epoch: Instant, done: &AtomicBool) -> Vec<u64> {
    let mut latencies = Vec::with_capacity(1 << 22);
    // SAFETY: plain epoll calls on descriptors that outlive the loop.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epoll >= 0, "epoll_create1");
    for s in sockets {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: s.as_raw_fd() as u64,
        };
        // SAFETY: `ev` is valid for the call.
        let r = unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
        assert_eq!(r, 0, "epoll_ctl");
    }
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    let mut buffers = [[0u8; 64]; BATCH];
    while !done.load(Ordering::Relaxed) {
        // SAFETY: `events` has room for 64 entries.
        let ready = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), 64, 10) };
        for ev in events.iter().take(ready.max(0) as usize) {
            let fd = ev.u64 as i32;
            loop {
                let n = receive_batch(fd, &mut buffers);
                let now_ns = epoch.elapsed().as_nanos() as u64;
                for (buf, len) in buffers.iter().zip(&n) {
                    if *len >= 48 {
                        let sent_ns = u64::from_be_bytes(buf[24..32].try_into().unwrap());
                        latencies.push(now_ns.saturating_sub(sent_ns));
                    }
                }
                if n.len() < BATCH {
                    break;
                }
            }
        }
    }
    // SAFETY: closing our own epoll descriptor.
    unsafe { libc::close(epoll) };
    latencies
}

/// One recvmmsg; the lengths of what arrived.
fn receive_batch(fd: i32, buffers: &mut [[u8; 64]; BATCH]) -> Vec<usize> {
    let mut iovecs = Vec::new();
    let mut headers = message_headers(buffers, &mut iovecs);
    // SAFETY: as in `send_batch`, every pointer targets `buffers`.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            headers.as_mut_ptr(),
            BATCH as _,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    (0..n.max(0) as usize)
        .map(|i| headers[i].msg_len as usize)
        .collect()
}
