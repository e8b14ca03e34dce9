//! rtnetlink messages, as the daemon's netlink watch receives them: the
//! crate's decoder and our reading of links, IPv6 addresses and
//! neighbours, on any bytes: an error or a value, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use ntpgate::netwatch;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(data) else {
        return;
    };
    if let NetlinkPayload::InnerMessage(m) = message.payload {
        match m {
            RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l) => {
                let _ = netwatch::link(&l);
            }
            RouteNetlinkMessage::NewAddress(a) | RouteNetlinkMessage::DelAddress(a) => {
                let _ = netwatch::addr(&a);
            }
            RouteNetlinkMessage::NewNeighbour(n) | RouteNetlinkMessage::DelNeighbour(n) => {
                let _ = netwatch::neigh(&n);
            }
            _ => {}
        }
    }
});
