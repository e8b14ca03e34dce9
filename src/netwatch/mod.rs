//! Watching the LAN through rtnetlink: the links, the router's own IPv6
//! addresses (with their temporary and deprecated flags) and the IPv6
//! neighbour table, dumped whole (cheap: a router has few), and a
//! connection subscribed to their changes so that a prefix change moves a
//! hole within a second.

use std::io;
use std::net::{IpAddr, Ipv6Addr};

use futures_util::stream::TryStreamExt;
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage},
    link::{LinkAttribute, LinkFlags, LinkMessage, State},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage},
};
use rtnetlink::{
    Handle,
    constants::{RTMGRP_IPV6_IFADDR, RTMGRP_LINK, RTMGRP_NEIGH},
    packet_core::NetlinkMessage,
    sys::{AsyncSocket, SocketAddr},
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

/// Decide whether a link counts as "up".
///
/// netlink-packet-route exposes both:
///  * `LinkAttribute::OperState(State)` (IFLA_OPERSTATE, RFC 2863 state), and
///  * `LinkMessage.header.flags: LinkFlags` (ifi_flags: IFF_UP, IFF_RUNNING,
///    IFF_LOWER_UP, ...).
///
/// We use: operstate == Up, OR flags contain IFF_UP|IFF_RUNNING.
/// Rationale: many virtual devices (lo, dummy, tun, some veth/bridge setups)
/// report operstate UNKNOWN even when fully usable; the kernel sets
/// IFF_RUNNING exactly when the device is admin-up and netif_oper_up()
/// (operstate UP or UNKNOWN), so UP|RUNNING catches those while still
/// rejecting admin-down devices and e.g. a port-less bridge or a veth whose
/// peer is down (operstate DOWN / LOWERLAYERDOWN, no RUNNING). We do not rely
/// on IFF_LOWER_UP alone because it only reflects carrier, not admin state.
fn link_is_up(flags: LinkFlags, oper: Option<State>) -> bool {
    oper == Some(State::Up) || flags.contains(LinkFlags::Up | LinkFlags::Running)
}

/// A link as the planner needs it.
pub fn link(msg: &LinkMessage) -> Link {
    let mut name = None;
    let mut oper = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::OperState(s) => oper = Some(*s),
            _ => {}
        }
    }
    Link {
        index: msg.header.index,
        name: name.unwrap_or_default(),
        up: link_is_up(msg.header.flags, oper),
    }
}

/// An IPv6 address of the router; `None` for other families or a message
/// without an address.
pub fn addr(msg: &AddressMessage) -> Option<Addr> {
    if msg.header.family != AddressFamily::Inet6 {
        return None;
    }
    let mut local = None;
    let mut address = None;
    let mut flags32: Option<AddressFlags> = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(IpAddr::V6(a)) => local = Some(*a),
            AddressAttribute::Address(IpAddr::V6(a)) => address = Some(*a),
            AddressAttribute::Flags(f) => flags32 = Some(*f),
            _ => {}
        }
    }
    // For IPv6 the kernel sends IFA_ADDRESS = the address; only for
    // point-to-point peers it sends IFA_LOCAL = own address and
    // IFA_ADDRESS = peer. So prefer IFA_LOCAL when present.
    let ip = local.or(address)?;
    // IFA_F_TEMPORARY == IFA_F_SECONDARY == 0x01 (the crate names it
    // `Secondary`); IFA_F_DEPRECATED == 0x20. Prefer the 32-bit IFA_FLAGS
    // attribute; fall back to the 8-bit ifa_flags header field.
    let (temporary, deprecated) = match flags32 {
        Some(f) => (
            f.contains(AddressFlags::Secondary),
            f.contains(AddressFlags::Deprecated),
        ),
        None => (
            msg.header.flags.contains(AddressHeaderFlags::Secondary),
            msg.header.flags.contains(AddressHeaderFlags::Deprecated),
        ),
    };
    Some(Addr {
        index: msg.header.index,
        address: ip,
        prefix_len: msg.header.prefix_len,
        temporary,
        deprecated,
    })
}

/// An IPv6 neighbour with an Ethernet address; `None` for anything else
/// (other families, INCOMPLETE or FAILED entries without NDA_LLADDR,
/// link-layer addresses of other lengths).
pub fn neigh(msg: &NeighbourMessage) -> Option<Neigh> {
    if msg.header.family != AddressFamily::Inet6 {
        return None;
    }
    let mut dst = None;
    let mut mac = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => dst = Some(*a),
            NeighbourAttribute::LinkLayerAddress(ll) => {
                mac = <[u8; 6]>::try_from(ll.as_slice()).ok()
            }
            _ => {}
        }
    }
    Some(Neigh {
        index: msg.header.ifindex,
        address: dst?,
        mac: mac?,
    })
}

pub async fn dump(handle: &Handle) -> Result<Snapshot, rtnetlink::Error> {
    let mut snap = Snapshot::default();
    // RTM_GETLINK dump (LinkGetRequest dumps by default).
    let mut links = handle.link().get().execute();
    while let Some(msg) = links.try_next().await? {
        snap.links.push(link(&msg));
    }
    // RTM_GETADDR dump with ifa_family = AF_INET6. AddressGetRequest has
    // no family setter; set it on the request message.
    let mut req = handle.address().get();
    req.message_mut().header.family = AddressFamily::Inet6;
    let mut addrs = req.execute();
    while let Some(msg) = addrs.try_next().await? {
        snap.addrs.extend(addr(&msg));
    }
    // RTM_GETNEIGH dump with ndm_family = AF_INET6.
    let mut neighs = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet6)
        .execute();
    while let Some(msg) = neighs.try_next().await? {
        snap.neighs.extend(neigh(&msg));
    }
    Ok(snap)
}

/// Open a route netlink connection subscribed to link, IPv6 address and
/// neighbour changes. The caller spawns the connection future, uses the
/// handle for [`dump`], and reads the change messages from the receiver:
/// any message means "dump again".
pub fn subscribe() -> io::Result<(
    impl std::future::Future<Output = ()> + Send,
    Handle,
    impl futures_util::Stream<Item = (NetlinkMessage<RouteNetlinkMessage>, SocketAddr)> + Unpin + Send,
)> {
    let (mut connection, handle, messages) = rtnetlink::new_connection()?;
    connection
        .socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, GROUPS))?;
    Ok((connection, handle, messages))
}
