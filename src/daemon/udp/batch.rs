//! Many datagrams per system call: recvmmsg and sendmmsg over buffers
//! allocated once per socket, so that the per-packet path allocates
//! nothing.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use super::cmsg::{CONTROL_LEN, Destination, parse_control, sockaddr_to, write_source_control};
use crate::ntp::packet::{HEADER_LEN, UnixNanos};

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Receive buffer per datagram. Larger NTP requests (NTS, long extension
/// fields) are not served here; the kernel flags them as truncated.
pub const MAX_DATAGRAM: usize = 1024;

/// What the kernel told us about one received datagram.
#[derive(Clone, Copy, Debug)]
pub struct Datagram {
    pub truncated: bool,
    pub source: SocketAddr,
    pub timestamp: Option<UnixNanos>,
}

/// Preallocated buffers for one socket's batches.
pub struct Batch {
    buffers: Box<[[u8; MAX_DATAGRAM]; BATCH]>,
    names: Box<[libc::sockaddr_storage; BATCH]>,
    controls: Box<[[u64; CONTROL_LEN / 8]; BATCH]>,
    iovecs: Box<[libc::iovec; BATCH]>,
    headers: Box<[libc::mmsghdr; BATCH]>,
    destinations: [Destination; BATCH],
    replies: Box<[[u8; HEADER_LEN]; BATCH]>,
    /// Which received datagram each staged reply answers.
    reply_to: [usize; BATCH],
    staged: usize,
    wildcard: bool,
    v6_socket: bool,
}

// SAFETY: the raw pointers in `iovecs` and `headers` point only into this
// Batch's own boxed buffers, and are rewritten before every system call.
unsafe impl Send for Batch {}

impl Batch {
    pub fn new(local: SocketAddr, wildcard: bool) -> Batch {
        // SAFETY: all these are plain C data for which all-zero is valid.
        unsafe {
            Batch {
                buffers: Box::new([[0; MAX_DATAGRAM]; BATCH]),
                names: Box::new(zeroed()),
                controls: Box::new([[0; CONTROL_LEN / 8]; BATCH]),
                iovecs: Box::new(zeroed()),
                headers: Box::new(zeroed()),
                destinations: [Destination::Unknown; BATCH],
                replies: Box::new([[0; HEADER_LEN]; BATCH]),
                reply_to: [0; BATCH],
                staged: 0,
                wildcard,
                v6_socket: local.is_ipv6(),
            }
        }
    }

    /// Receive up to [`BATCH`] datagrams without blocking.
    pub fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            };
            let h = &mut self.headers[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.controls[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = CONTROL_LEN as _;
            h.msg_hdr.msg_flags = 0;
        }
        self.staged = 0;
        // SAFETY: every header points at buffers owned by `self` that live
        // until the call returns.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as _,
                // The flags are `int` in glibc, `unsigned` in musl.
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The `i`th datagram of the last [`Batch::receive`].
    pub fn datagram(&mut self, i: usize) -> Option<(Datagram, &[u8])> {
        let h = &self.headers[i];
        let source = sockaddr_to(&self.names[i])?;
        let len = (h.msg_len as usize).min(MAX_DATAGRAM);
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let (timestamp, destination) = parse_control(&h.msg_hdr);
        self.destinations[i] = destination;
        Some((
            Datagram {
                truncated,
                source,
                timestamp,
            },
            &self.buffers[i][..len],
        ))
    }

    /// Where the reply to datagram `i` is written before [`Batch::send`].
    pub fn stage_reply(&mut self, i: usize) -> &mut [u8; HEADER_LEN] {
        let slot = self.staged;
        self.reply_to[slot] = i;
        self.staged += 1;
        &mut self.replies[slot]
    }

    /// The staged replies, to fill in their transmit timestamps.
    pub fn staged_replies(&mut self) -> &mut [[u8; HEADER_LEN]] {
        &mut self.replies[..self.staged]
    }

    /// Send every staged reply. Returns how many the kernel did not take.
    pub fn send(&mut self, fd: RawFd) -> usize {
        let staged = self.staged;
        for slot in 0..staged {
            let i = self.reply_to[slot];
            // The request's own header and name buffers are reused: the
            // reply goes back to the request's source.
            self.iovecs[slot] = libc::iovec {
                iov_base: self.replies[slot].as_mut_ptr().cast(),
                iov_len: HEADER_LEN,
            };
            let name_len = match i32::from(self.names[i].ss_family) {
                libc::AF_INET => size_of::<libc::sockaddr_in>(),
                _ => size_of::<libc::sockaddr_in6>(),
            };
            if slot != i {
                self.names[slot] = self.names[i];
            }
            let control_len = if self.wildcard {
                write_source_control(
                    &mut self.controls[slot],
                    self.destinations[i],
                    self.v6_socket,
                )
            } else {
                0
            };
            let h = &mut self.headers[slot];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.names[slot] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = name_len as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovecs[slot];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = if control_len == 0 {
                std::ptr::null_mut()
            } else {
                self.controls[slot].as_mut_ptr().cast()
            };
            h.msg_hdr.msg_controllen = control_len as _;
            h.msg_hdr.msg_flags = 0;
        }
        self.staged = 0;
        let mut sent = 0;
        let mut failed = 0;
        while sent < staged {
            // SAFETY: headers[sent..staged] point at live buffers of `self`.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.headers[sent..].as_mut_ptr(),
                    (staged - sent) as _,
                    libc::MSG_DONTWAIT as _,
                )
            };
            if n > 0 {
                sent += n as usize;
            } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                // sendmmsg fails only on its first datagram (socket buffer
                // full, or an ICMP error from an earlier reply): skip that
                // one and carry on with the rest.
                sent += 1;
                failed += 1;
            }
        }
        failed
    }
}
