//! UDP sockets for the server: many datagrams per system call (recvmmsg and
//! sendmmsg), kernel receive timestamps (SO_TIMESTAMPNS), and replies sent
//! from the address the request came to (IP_PKTINFO / IPV6_PKTINFO), which a
//! router with many addresses on a wildcard socket needs.
//!
//! All buffers are allocated once per socket: the per-packet path allocates
//! nothing.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::ntp::packet::{HEADER_LEN, UnixNanos};

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Receive buffer per datagram. Larger NTP requests (NTS, long extension
/// fields) are not served here; the kernel flags them as truncated.
pub const MAX_DATAGRAM: usize = 1024;
/// Room for a timestamp and a packet-info control message.
const CONTROL_LEN: usize = 128;

/// A bound, non-blocking UDP socket with its options set.
pub struct ServerSocket {
    pub socket: std::net::UdpSocket,
    pub local: SocketAddr,
    /// Bound to a wildcard address: replies need their source set.
    pub wildcard: bool,
    /// The kernel gives receive timestamps.
    pub kernel_timestamps: bool,
}

fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(ret)
    }
}

fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a c_int that outlives the call.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(ret, "setsockopt").map(|_| ())
}

impl ServerSocket {
    /// Bind `addr`. `::` is dual-stack (IPv4 clients arrive as mapped
    /// addresses), any other IPv6 address is IPv6 only.
    pub fn bind(addr: SocketAddr) -> io::Result<ServerSocket> {
        let family = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = check(
            unsafe {
                libc::socket(
                    family,
                    libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    0,
                )
            },
            "socket",
        )?;
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let wildcard = addr.ip().is_unspecified();
        if let SocketAddr::V6(v6) = addr {
            let only_v6 = libc::c_int::from(!v6.ip().is_unspecified());
            set_int_option(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, only_v6)?;
        }
        // Only a wildcard socket needs to know where each request went.
        if wildcard {
            match addr {
                SocketAddr::V6(_) => {
                    set_int_option(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?
                }
                SocketAddr::V4(_) => set_int_option(raw, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?,
            }
        }
        if !wildcard {
            // Bind even before the address is up (a router at boot, a
            // prefix still on its way): the socket starts serving once it is.
            let _ = set_int_option(raw, libc::IPPROTO_IP, libc::IP_FREEBIND, 1);
        }
        let kernel_timestamps =
            set_int_option(raw, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1).is_ok();
        // The receive buffer keeps the kernel's default on purpose: under
        // overload a deeper queue only adds delay to every answer.

        let (storage, len) = sockaddr_from(addr);
        // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
        let ret =
            unsafe { libc::bind(raw, (&storage as *const libc::sockaddr_storage).cast(), len) };
        check(ret, &format!("bind {addr}"))?;
        let local = local_addr(raw)?;
        Ok(ServerSocket {
            socket: std::net::UdpSocket::from(fd),
            local,
            wildcard,
            kernel_timestamps,
        })
    }
}

fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: getsockname writes at most `len` bytes into `storage`.
    unsafe {
        let mut storage: libc::sockaddr_storage = zeroed();
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        check(
            libc::getsockname(
                fd,
                (&mut storage as *mut libc::sockaddr_storage).cast(),
                &mut len,
            ),
            "getsockname",
        )?;
        sockaddr_to(&storage).ok_or_else(|| io::Error::other("unknown address family"))
    }
}

fn sockaddr_from(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value, and
    // it is large and aligned enough for either address type.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                // SAFETY: zero padding.
                ..unsafe { zeroed() }
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn sockaddr_to(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin: &libc::sockaddr_in =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// What the kernel told us about one received datagram.
#[derive(Clone, Copy, Debug)]
pub struct Datagram {
    pub len: usize,
    pub truncated: bool,
    pub source: SocketAddr,
    pub timestamp: Option<UnixNanos>,
}

/// Where a request arrived: the reply leaves from there.
#[derive(Clone, Copy)]
enum Destination {
    Unknown,
    V4 { addr: [u8; 4] },
    V6 { addr: [u8; 16], ifindex: u32 },
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
                len,
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

/// Pull the receive timestamp and the destination address out of the
/// control messages.
fn parse_control(msg: &libc::msghdr) -> (Option<UnixNanos>, Destination) {
    let mut timestamp = None;
    let mut destination = Destination::Unknown;
    // SAFETY: the kernel filled msg_control; the CMSG macros walk it within
    // msg_controllen, and every read below checks the data length first.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            let data_len = (c.cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
            match (c.cmsg_level, c.cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                    timestamp = read_timespec(data, data_len);
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                    if data_len >= size_of::<libc::in6_pktinfo>() =>
                {
                    let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                    destination = Destination::V6 {
                        addr: info.ipi6_addr.s6_addr,
                        ifindex: info.ipi6_ifindex as u32,
                    };
                }
                (libc::IPPROTO_IP, libc::IP_PKTINFO)
                    if data_len >= size_of::<libc::in_pktinfo>() =>
                {
                    let info: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                    // On a dual-stack socket IPV6_PKTINFO (mapped) is preferred.
                    if matches!(destination, Destination::Unknown) {
                        destination = Destination::V4 {
                            addr: info.ipi_addr.s_addr.to_ne_bytes(),
                        };
                    }
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    (timestamp, destination)
}

/// SCM_TIMESTAMPNS carries a timespec whose width depends on the ABI: two
/// 64-bit fields on 64-bit kernels and on 32-bit time64 ABIs, two 32-bit
/// fields on old 32-bit ones. Read by size rather than trust the struct.
///
/// # Safety
/// `data` must point at `len` readable bytes.
unsafe fn read_timespec(data: *const u8, len: usize) -> Option<UnixNanos> {
    // SAFETY: the caller guarantees `len` readable bytes at `data`.
    let (secs, nanos) = unsafe {
        match len {
            16 => (
                std::ptr::read_unaligned(data.cast::<i64>()),
                std::ptr::read_unaligned(data.add(8).cast::<i64>()),
            ),
            8 => (
                i64::from(std::ptr::read_unaligned(data.cast::<i32>())),
                i64::from(std::ptr::read_unaligned(data.add(4).cast::<i32>())),
            ),
            _ => return None,
        }
    };
    (secs > 0 && (0..1_000_000_000).contains(&nanos))
        .then(|| UnixNanos(secs * 1_000_000_000 + nanos))
}

/// Write a packet-info control message that makes the reply leave from the
/// address the request came to. Returns its length (0 when unknown).
fn write_source_control(
    control: &mut [u64; CONTROL_LEN / 8],
    dst: Destination,
    v6_socket: bool,
) -> usize {
    let buf: *mut u8 = control.as_mut_ptr().cast();
    // SAFETY: `control` is CONTROL_LEN bytes, 8-aligned, larger than one
    // CMSG_SPACE of either pktinfo; the header is written through the CMSG
    // macros' layout.
    unsafe {
        let (level, kind, payload_len) = match (dst, v6_socket) {
            (Destination::Unknown, _) => return 0,
            (Destination::V6 { .. }, _) | (Destination::V4 { .. }, true) => (
                libc::IPPROTO_IPV6,
                libc::IPV6_PKTINFO,
                size_of::<libc::in6_pktinfo>(),
            ),
            (Destination::V4 { .. }, false) => (
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                size_of::<libc::in_pktinfo>(),
            ),
        };
        let space = libc::CMSG_SPACE(payload_len as u32) as usize;
        std::ptr::write_bytes(buf, 0, space);
        let cmsg = buf.cast::<libc::cmsghdr>();
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = libc::CMSG_LEN(payload_len as u32) as _;
        let data = libc::CMSG_DATA(cmsg);
        match dst {
            Destination::V6 { addr, ifindex } => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr { s6_addr: addr },
                    ipi6_ifindex: ifindex as _,
                };
                std::ptr::write_unaligned(data.cast(), info);
            }
            Destination::V4 { addr } if v6_socket => {
                // A dual-stack socket takes the IPv4 source as a mapped address.
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: Ipv4Addr::from(addr).to_ipv6_mapped().octets(),
                    },
                    ipi6_ifindex: 0,
                };
                std::ptr::write_unaligned(data.cast(), info);
            }
            Destination::V4 { addr } => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(addr),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                std::ptr::write_unaligned(data.cast(), info);
            }
            Destination::Unknown => unreachable!(),
        }
        space
    }
}

/// Turn on kernel receive timestamps for a client socket; false if the
/// kernel refuses (the caller then reads the clock itself).
pub fn enable_timestamps(fd: RawFd) -> bool {
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1).is_ok()
}

/// One datagram from a connected client socket, with its kernel receive
/// timestamp when there is one. Non-blocking.
pub fn receive_one(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<UnixNanos>)> {
    let mut control = [0u64; CONTROL_LEN / 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero msghdr is valid; every pointer set below targets a
    // local that outlives the call.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CONTROL_LEN as _;
    // SAFETY: see above.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let (timestamp, _) = parse_control(&msg);
    Ok((n as usize, timestamp))
}
