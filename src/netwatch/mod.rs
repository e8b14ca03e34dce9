//! Watching the LAN through rtnetlink: the links, the router's own IPv6
//! addresses (with their temporary and deprecated flags) and the IPv6
//! neighbour table, dumped whole (cheap: a router has few), and a
//! connection subscribed to their changes so that a prefix change moves a
//! hole within a second.
//!
//! The connection is rtnetlink's (its netlink-proto and netlink-sys), with
//! a message type of our own: the three dump requests, and of the answers
//! only the fields the planner reads. rtnetlink's `Handle` would parse
//! every message into netlink-packet-route's types, whose parsers and
//! builders for every link kind, route and traffic-control attribute were
//! a quarter of the router binary (BENCHMARKS.md).

use std::io;
use std::net::Ipv6Addr;

use futures_util::stream::StreamExt;
use rtnetlink::{
    constants::{RTMGRP_IPV6_IFADDR, RTMGRP_LINK, RTMGRP_NEIGH},
    packet_core::{
        DecodeError, NLA_HEADER_SIZE, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable,
        NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable, NlasIterator,
    },
    proto::{Connection, ConnectionHandle},
    sys::{AsyncSocket, SocketAddr, protocols::NETLINK_ROUTE},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    pub temporary: bool,
    pub deprecated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neigh {
    pub index: u32,
    pub address: Ipv6Addr,
    pub mac: [u8; 6],
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub links: Vec<Link>,
    pub addrs: Vec<Addr>,
    pub neighs: Vec<Neigh>,
}

/// Multicast group bitmask for `SocketAddr::new(0, groups)` (legacy
/// RTMGRP_* bind mask, bit = 1 << (RTNLGRP_x - 1)):
///   RTMGRP_LINK        = 0x001 (1)    RTNLGRP_LINK        = 1
///   RTMGRP_NEIGH       = 0x004 (4)    RTNLGRP_NEIGH       = 3
///   RTMGRP_IPV6_IFADDR = 0x100 (256)  RTNLGRP_IPV6_IFADDR = 9
/// => GROUPS = 0x105 = 261.
/// (Constants from rtnetlink::constants; identical values exist in
/// libc::RTMGRP_LINK / RTMGRP_NEIGH / RTMGRP_IPV6_IFADDR, but typed c_int (i32)
/// there, so they would need `as u32`.)
pub const GROUPS: u32 = RTMGRP_LINK | RTMGRP_IPV6_IFADDR | RTMGRP_NEIGH;

/// The fixed headers before the attributes (linux/rtnetlink.h, neighbour.h,
/// if_addr.h): ifinfomsg, ifaddrmsg, ndmsg.
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const NDMSG_LEN: usize = 12;
/// IFA_FLAGS (linux/if_addr.h), the 32-bit flags attribute; libc lacks it.
const IFA_FLAGS: u16 = 8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// What netwatch asks the kernel for: a dump of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Links,
    Addrs,
    Neighs,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Links => "link",
            Table::Addrs => "address",
            Table::Neighs => "neighbour",
        }
    }
}

/// A route netlink message as netwatch sends and reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMessage {
    /// A dump request (the only message netwatch sends).
    Dump(Table),
    Link(Link),
    /// `None`: not an IPv6 address, or without one.
    Addr(Option<Addr>),
    /// `None`: not an IPv6 neighbour with an Ethernet address.
    Neigh(Option<Neigh>),
    /// Any other message (a removal, a route, ...), by type: as a change
    /// notice it still means "dump again".
    Other(u16),
}

impl NetlinkSerializable for RouteMessage {
    fn message_type(&self) -> u16 {
        match self {
            RouteMessage::Dump(Table::Links) => libc::RTM_GETLINK,
            RouteMessage::Dump(Table::Addrs) => libc::RTM_GETADDR,
            RouteMessage::Dump(Table::Neighs) => libc::RTM_GETNEIGH,
            RouteMessage::Link(_) => libc::RTM_NEWLINK,
            RouteMessage::Addr(_) => libc::RTM_NEWADDR,
            RouteMessage::Neigh(_) => libc::RTM_NEWNEIGH,
            RouteMessage::Other(kind) => *kind,
        }
    }

    /// A dump request is its table's fixed header, zero but for the
    /// family (IPv6 for addresses and neighbours, every family's links).
    /// Answers are never sent: they serialize to no body.
    fn buffer_len(&self) -> usize {
        match self {
            RouteMessage::Dump(Table::Links) => IFINFOMSG_LEN,
            RouteMessage::Dump(Table::Addrs) => IFADDRMSG_LEN,
            RouteMessage::Dump(Table::Neighs) => NDMSG_LEN,
            _ => 0,
        }
    }

    fn serialize(&self, buffer: &mut [u8]) {
        buffer.fill(0);
        if let RouteMessage::Dump(Table::Addrs | Table::Neighs) = self {
            buffer[0] = AF_INET6;
        }
    }
}

impl NetlinkDeserializable for RouteMessage {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, DecodeError> {
        Ok(match header.message_type {
            libc::RTM_NEWLINK => RouteMessage::Link(link(payload)?),
            libc::RTM_NEWADDR => RouteMessage::Addr(addr(payload)?),
            libc::RTM_NEWNEIGH => RouteMessage::Neigh(neigh(payload)?),
            other => RouteMessage::Other(other),
        })
    }
}

/// The fixed header of a message, or an error naming what was short.
fn fixed<'a>(payload: &'a [u8], len: usize, what: &str) -> Result<&'a [u8], DecodeError> {
    payload.get(..len).ok_or_else(|| {
        DecodeError::from(format!(
            "{what} message of {} bytes, shorter than its {len}-byte header",
            payload.len()
        ))
    })
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The (kind, value) attributes after a fixed header.
fn attributes(rest: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), DecodeError>> {
    NlasIterator::new(rest).map(|nla| {
        let nla = nla?;
        let (kind, end) = (nla.kind(), usize::from(nla.length()));
        Ok((kind, &nla.into_inner()[NLA_HEADER_SIZE..end]))
    })
}

fn ipv6(value: &[u8]) -> Option<Ipv6Addr> {
    <[u8; 16]>::try_from(value).ok().map(Ipv6Addr::from)
}

/// Decide whether a link counts as "up".
///
/// The kernel reports both IFLA_OPERSTATE (RFC 2863 state) and ifi_flags
/// (IFF_UP, IFF_RUNNING, IFF_LOWER_UP, ...).
///
/// We use: operstate == Up, OR flags contain IFF_UP|IFF_RUNNING.
/// Rationale: many virtual devices (lo, dummy, tun, some veth/bridge setups)
/// report operstate UNKNOWN even when fully usable; the kernel sets
/// IFF_RUNNING exactly when the device is admin-up and netif_oper_up()
/// (operstate UP or UNKNOWN), so UP|RUNNING catches those while still
/// rejecting admin-down devices and e.g. a port-less bridge or a veth whose
/// peer is down (operstate DOWN / LOWERLAYERDOWN, no RUNNING). We do not rely
/// on IFF_LOWER_UP alone because it only reflects carrier, not admin state.
fn link_is_up(flags: u32, oper: Option<u8>) -> bool {
    let up_running = (libc::IFF_UP | libc::IFF_RUNNING) as u32;
    oper == Some(libc::IF_OPER_UP as u8) || flags & up_running == up_running
}

/// A link as the planner needs it, from an RTM_NEWLINK payload.
pub fn link(payload: &[u8]) -> Result<Link, DecodeError> {
    let header = fixed(payload, IFINFOMSG_LEN, "link")?;
    let mut name = String::new();
    let mut oper = None;
    for attr in attributes(&payload[IFINFOMSG_LEN..]) {
        match attr? {
            (libc::IFLA_IFNAME, value) => {
                let bytes = value.split(|&b| b == 0).next().unwrap_or_default();
                name = String::from_utf8_lossy(bytes).into_owned();
            }
            (libc::IFLA_OPERSTATE, [state, ..]) => oper = Some(*state),
            _ => {}
        }
    }
    Ok(Link {
        index: u32_at(header, 4),
        name,
        up: link_is_up(u32_at(header, 8), oper),
    })
}

/// An IPv6 address of the router, from an RTM_NEWADDR payload; `None` for
/// other families or a message without an address.
pub fn addr(payload: &[u8]) -> Result<Option<Addr>, DecodeError> {
    let header = fixed(payload, IFADDRMSG_LEN, "address")?;
    if header[0] != AF_INET6 {
        return Ok(None);
    }
    let mut local = None;
    let mut address = None;
    let mut flags32 = None;
    for attr in attributes(&payload[IFADDRMSG_LEN..]) {
        match attr? {
            (libc::IFA_LOCAL, value) => local = ipv6(value),
            (libc::IFA_ADDRESS, value) => address = ipv6(value),
            (IFA_FLAGS, value) if value.len() == 4 => flags32 = Some(u32_at(value, 0)),
            _ => {}
        }
    }
    // For IPv6 the kernel sends IFA_ADDRESS = the address; only for
    // point-to-point peers it sends IFA_LOCAL = own address and
    // IFA_ADDRESS = peer. So prefer IFA_LOCAL when present.
    let Some(ip) = local.or(address) else {
        return Ok(None);
    };
    // IFA_F_TEMPORARY == IFA_F_SECONDARY == 0x01; IFA_F_DEPRECATED == 0x20.
    // Prefer the 32-bit IFA_FLAGS attribute; fall back to the 8-bit
    // ifa_flags header field.
    let flags = flags32.unwrap_or(u32::from(header[2]));
    Ok(Some(Addr {
        index: u32_at(header, 4),
        address: ip,
        prefix_len: header[1],
        temporary: flags & libc::IFA_F_SECONDARY != 0,
        deprecated: flags & libc::IFA_F_DEPRECATED != 0,
    }))
}

/// An IPv6 neighbour with an Ethernet address, from an RTM_NEWNEIGH
/// payload; `None` for anything else (other families, INCOMPLETE or FAILED
/// entries without NDA_LLADDR, link-layer addresses of other lengths).
pub fn neigh(payload: &[u8]) -> Result<Option<Neigh>, DecodeError> {
    let header = fixed(payload, NDMSG_LEN, "neighbour")?;
    if header[0] != AF_INET6 {
        return Ok(None);
    }
    let mut dst = None;
    let mut mac = None;
    for attr in attributes(&payload[NDMSG_LEN..]) {
        match attr? {
            (libc::NDA_DST, value) => dst = ipv6(value),
            (libc::NDA_LLADDR, value) => mac = <[u8; 6]>::try_from(value).ok(),
            _ => {}
        }
    }
    Ok(dst.zip(mac).map(|(address, mac)| Neigh {
        index: u32_at(header, 4),
        address,
        mac,
    }))
}

/// The handle to a route netlink connection.
pub type Handle = ConnectionHandle<RouteMessage>;

/// Dump one table; the answers come one message each.
async fn dump_table(handle: &Handle, table: Table) -> io::Result<Vec<RouteMessage>> {
    let mut request = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(RouteMessage::Dump(table)),
    );
    request.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.finalize();
    let mut answers = handle
        .request(request, SocketAddr::new(0, 0))
        .map_err(|e| io::Error::other(format!("netlink {} dump: {e}", table.name())))?;
    let mut found = Vec::new();
    while let Some(message) = answers.next().await {
        match message.payload {
            NetlinkPayload::InnerMessage(m) => found.push(m),
            NetlinkPayload::Error(e) => {
                return Err(io::Error::new(
                    e.to_io().kind(),
                    format!("netlink {} dump: {e}", table.name()),
                ));
            }
            _ => {}
        }
    }
    Ok(found)
}

pub async fn dump(handle: &Handle) -> io::Result<Snapshot> {
    let mut snap = Snapshot::default();
    for table in [Table::Links, Table::Addrs, Table::Neighs] {
        for message in dump_table(handle, table).await? {
            match message {
                RouteMessage::Link(l) => snap.links.push(l),
                RouteMessage::Addr(a) => snap.addrs.extend(a),
                RouteMessage::Neigh(n) => snap.neighs.extend(n),
                RouteMessage::Dump(_) | RouteMessage::Other(_) => {}
            }
        }
    }
    Ok(snap)
}

/// Open a route netlink connection. The caller spawns the connection
/// future and uses the handle for [`dump`].
pub fn connect() -> io::Result<(Connection<RouteMessage>, Handle)> {
    let (connection, handle, _) = rtnetlink::proto::new_connection(NETLINK_ROUTE)?;
    Ok((connection, handle))
}

/// A change notice from the kernel, and who sent it.
pub type Notice = (NetlinkMessage<RouteMessage>, SocketAddr);

/// Open a route netlink connection subscribed to link, IPv6 address and
/// neighbour changes. The caller spawns the connection future, uses the
/// handle for [`dump`], and reads the change messages from the receiver:
/// any message means "dump again".
pub fn subscribe() -> io::Result<(
    Connection<RouteMessage>,
    Handle,
    impl futures_util::Stream<Item = Notice> + Unpin + Send + Sync,
)> {
    let (mut connection, handle, messages) = rtnetlink::proto::new_connection(NETLINK_ROUTE)?;
    connection
        .socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, GROUPS))?;
    Ok((connection, handle, messages))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One attribute as the kernel lays it out: length, kind, value,
    /// padded to four bytes.
    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(4 + value.len() as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    fn ifaddrmsg(family: u8, prefix_len: u8, flags: u8, index: u32) -> Vec<u8> {
        let mut out = vec![family, prefix_len, flags, 0];
        out.extend_from_slice(&index.to_ne_bytes());
        out
    }

    #[test]
    fn an_address_prefers_ifa_local_and_the_32_bit_flags() {
        let own: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let peer: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut payload = ifaddrmsg(AF_INET6, 64, 0, 7);
        payload.extend(nla(libc::IFA_ADDRESS, &peer.octets()));
        payload.extend(nla(libc::IFA_LOCAL, &own.octets()));
        payload.extend(nla(IFA_FLAGS, &0x21u32.to_ne_bytes()));
        let got = addr(&payload).unwrap().unwrap();
        assert_eq!(
            got,
            Addr {
                index: 7,
                address: own,
                prefix_len: 64,
                temporary: true,
                deprecated: true,
            }
        );
    }

    #[test]
    fn without_ifa_flags_the_header_flags_count() {
        let a: Ipv6Addr = "2001:db8::5".parse().unwrap();
        let mut payload = ifaddrmsg(AF_INET6, 56, 0x20, 2);
        payload.extend(nla(libc::IFA_ADDRESS, &a.octets()));
        let got = addr(&payload).unwrap().unwrap();
        assert!(got.deprecated && !got.temporary);
    }

    #[test]
    fn ipv4_addresses_and_neighbours_without_a_mac_are_left_out() {
        let mut v4 = ifaddrmsg(libc::AF_INET as u8, 24, 0, 2);
        v4.extend(nla(libc::IFA_ADDRESS, &[192, 0, 2, 1]));
        assert_eq!(addr(&v4).unwrap(), None);
        let mut ndmsg = vec![AF_INET6, 0, 0, 0];
        ndmsg.extend_from_slice(&3u32.to_ne_bytes());
        ndmsg.extend_from_slice(&[0; 4]);
        let dst: Ipv6Addr = "fe80::1".parse().unwrap();
        let mut incomplete = ndmsg.clone();
        incomplete.extend(nla(libc::NDA_DST, &dst.octets()));
        assert_eq!(neigh(&incomplete).unwrap(), None);
        incomplete.extend(nla(libc::NDA_LLADDR, &[2, 0, 0, 0, 0, 9]));
        assert_eq!(
            neigh(&incomplete).unwrap(),
            Some(Neigh {
                index: 3,
                address: dst,
                mac: [2, 0, 0, 0, 0, 9],
            })
        );
    }

    #[test]
    fn a_short_or_broken_message_is_an_error_not_a_panic() {
        let err = link(&[0; 10]).unwrap_err().to_string();
        assert!(err.contains("link message of 10 bytes"), "{err}");
        let mut payload = vec![0; IFINFOMSG_LEN];
        // An attribute claiming 40 bytes where 8 are left.
        payload.extend_from_slice(&40u16.to_ne_bytes());
        payload.extend_from_slice(&libc::IFLA_IFNAME.to_ne_bytes());
        payload.extend_from_slice(b"eth0");
        assert!(link(&payload).is_err());
    }
}
