//! Binding the server's sockets (with socket2) and the socket options
//! socket2 has no setter for: packet info, so that replies leave from the
//! address the request came to, and kernel receive timestamps.

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::cmsg::{CONTROL_LEN, parse_control};
use crate::ntp::packet::UnixNanos;

/// A bound, non-blocking UDP socket with its options set.
pub struct ServerSocket {
    pub socket: std::net::UdpSocket,
    pub local: SocketAddr,
    /// Bound to a wildcard address: replies need their source set.
    pub wildcard: bool,
    /// The kernel gives receive timestamps.
    pub kernel_timestamps: bool,
}

pub(super) fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(ret)
    }
}

pub(super) fn set_int_option(
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
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::DGRAM.nonblocking().cloexec(),
            Some(Protocol::UDP),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("socket: {e}")))?;
        let raw = socket.as_raw_fd();
        let wildcard = addr.ip().is_unspecified();
        if addr.is_ipv6() {
            socket.set_only_v6(!wildcard)?;
        }
        // Only a wildcard socket needs to know where each request went.
        if wildcard {
            match addr {
                SocketAddr::V6(_) => {
                    set_int_option(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?
                }
                SocketAddr::V4(_) => set_int_option(raw, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?,
            }
        } else {
            // Bind even before the address is up (a router at boot, a
            // prefix still on its way): the socket starts serving once it is.
            let _ = socket.set_freebind_v4(true);
        }
        let kernel_timestamps = enable_timestamps(raw);
        // The receive buffer keeps the kernel's default on purpose: under
        // overload a deeper queue only adds delay to every answer.
        socket
            .bind(&SockAddr::from(addr))
            .map_err(|e| io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
        let local = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("unknown address family"))?;
        Ok(ServerSocket {
            socket: socket.into(),
            local,
            wildcard,
            kernel_timestamps,
        })
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
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
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
