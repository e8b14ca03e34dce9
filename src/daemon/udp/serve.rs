//! The serving loop of one socket: receive a batch, let the protocol core
//! decide on each request, stamp and send the replies, count.

use std::io;
use std::sync::Arc;

use tokio::io::Interest;

use super::batch::{BATCH, Batch};
use super::socket::ServerSocket;
use crate::clock::SystemClock;
use crate::daemon::{Shared, lock};
use crate::ntp::clock::Clock;
use crate::ntp::packet::{self, NtpTimestamp, ParseError};
use crate::ntp::server::{DropReason, Outcome, Request};
use crate::status::{Clients, ServerCounters};
use crate::{error, warning};

/// One socket's receive-decide-reply loop.
pub(in crate::daemon) async fn serve_socket(socket: ServerSocket, shared: Arc<Shared>) {
    let mut batch = Batch::new(socket.local, socket.wildcard);
    let local = socket.local;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket.socket);
    let socket = match tokio::net::UdpSocket::from_std(socket.socket) {
        Ok(s) => s,
        Err(e) => {
            error!("{local}: {e}");
            return;
        }
    };
    let mut receive_errors = 0u64;
    // The batch's source addresses, for the busiest-clients table.
    let mut sources = Vec::with_capacity(BATCH);
    loop {
        if let Err(e) = socket.readable().await {
            error!("{local}: {e}");
            return;
        }
        let n = match socket.try_io(Interest::READABLE, || batch.receive(fd)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                receive_errors += 1;
                if receive_errors.is_power_of_two() {
                    warning!("{local}: receive failed ({receive_errors} times so far): {e}");
                }
                continue;
            }
        };
        // Used where the kernel gave no timestamp.
        let received_fallback = SystemClock.now();
        let monotonic_ns = shared.epoch.elapsed().as_nanos() as u64;
        let state = *lock(&shared.state);
        let mut counters = ServerCounters::default();
        sources.clear();
        {
            let mut server = lock(&shared.server);
            for i in 0..n {
                let Some((datagram, bytes)) = batch.datagram(i) else {
                    continue;
                };
                let mut reply = [0u8; packet::HEADER_LEN];
                let outcome = if datagram.truncated {
                    Outcome::Dropped(DropReason::Malformed(ParseError::TooLong))
                } else {
                    let request = Request {
                        packet: bytes,
                        source: datagram.source,
                        received: datagram.timestamp.unwrap_or(received_fallback),
                        monotonic_ns,
                    };
                    server.handle(&state, &request, &mut reply)
                };
                counters.record(outcome);
                sources.push(datagram.source.ip());
                if outcome.reply_sent() {
                    *batch.stage_reply(i) = reply;
                }
            }
        }
        // The transmit timestamp, as late as possible: just before the send.
        let transmit = NtpTimestamp::from_unix(SystemClock.now());
        for reply in batch.staged_replies() {
            packet::set_transmit(reply, transmit);
        }
        counters.send_failed += batch.send(fd) as u64;
        lock(&shared.counters).add(&counters);
        let mut clients = lock(&shared.clients);
        for sample in sources.chunks(Clients::SAMPLE) {
            clients.observe(crate::net::canonical(sample[0]), sample.len() as u64);
        }
    }
}
