//! Control messages: the kernel's receive timestamp and the address a
//! request came to, read from a received datagram, and the packet info
//! that makes a reply leave from that address.

use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::ntp::packet::UnixNanos;

/// Room for a timestamp and a packet-info control message.
pub(super) const CONTROL_LEN: usize = 128;

/// Where a request arrived: the reply leaves from there.
#[derive(Clone, Copy)]
pub(super) enum Destination {
    Unknown,
    V4 { addr: [u8; 4] },
    V6 { addr: [u8; 16], ifindex: u32 },
}

pub(super) fn sockaddr_to(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
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

/// Pull the receive timestamp and the destination address out of the
/// control messages.
pub(super) fn parse_control(msg: &libc::msghdr) -> (Option<UnixNanos>, Destination) {
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
pub(super) fn write_source_control(
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
