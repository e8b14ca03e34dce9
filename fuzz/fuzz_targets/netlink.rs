//! rtnetlink messages, as the daemon's netlink watch receives them: the
//! netlink header read by netlink-packet-core, the payload by our own
//! reader of links, IPv6 addresses and neighbours (netwatch's message
//! type); and each reader on the bare bytes too. Any bytes: an error or a
//! value, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netlink_packet_core::NetlinkMessage;
use ntpgate::netwatch::{self, RouteMessage};

fuzz_target!(|data: &[u8]| {
    let _ = NetlinkMessage::<RouteMessage>::deserialize(data);
    let _ = netwatch::link(data);
    let _ = netwatch::addr(data);
    let _ = netwatch::neigh(data);
});
