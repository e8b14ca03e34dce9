//! The package's fw4 include files inside OpenWrt's real fw4 ruleset, with
//! real packets: a `wan` namespace (the internet side), a `router` with
//! OpenWrt's interface names (`pppoe-wan`, `br-lan`) and forwarding on, and
//! a `lan` host. The router is loaded with the fw4 fixture, its include
//! paths pointed at `openwrt-package/ntpgate/files/nftables.d/`. Elements
//! are added here with `nft`, as the daemon will: this proves what the
//! sets and rules let through, and what they do not.

mod common;

use std::time::Duration;

use common::lan::*;
use common::*;

/// An NTP server (ntpgate serving its local clock; it never steers it).
fn server_in(ns: &Netns, listen: &str, port: u16) -> Daemon {
    Daemon::start_with(
        ns.command(BIN),
        &format!(
            "config server\n\tlist listen '{listen}'\n\toption port '{port}'\n\toption local_stratum '3'\n\toption ratelimit '0'\n"
        ),
        1,
    )
}

#[test]
fn pinholes_through_the_real_fw4_ruleset() {
    let net = Network::build();
    // NTP servers: the LAN host on 123, and on 124 (another port, which must
    // stay closed); the router's own server.
    let _lan_ntp = server_in(&net.lan, "::", 123);
    let _lan_other_port = server_in(&net.lan, "::", 124);
    let _router_ntp = server_in(&net.router, "::", 123);

    // fw4 alone: nothing from the WAN gets in.
    assert!(
        !net.answers(LAN_HOST, 123),
        "LAN host reachable without a pinhole"
    );
    assert!(
        !net.answers(ROUTER_WAN, 123),
        "router reachable without serve_wan"
    );

    // A pinhole for the LAN host: NTP to it passes; another port, another
    // LAN host, and the router itself stay closed.
    net.nft(&format!(
        "add element inet fw4 ntpgate_lan6 {{ {LAN_HOST} timeout 60s }}"
    ));
    assert!(
        net.answers(LAN_HOST, 123),
        "the pinhole does not let NTP through"
    );
    assert!(
        !net.answers(LAN_HOST, 124),
        "another port of the host is open"
    );
    assert!(
        !net.answers(OTHER_LAN_HOST, 123),
        "another LAN host is open"
    );
    assert!(
        !net.answers(ROUTER_WAN, 123),
        "the router opened with the LAN pinhole"
    );
    let listing = String::from_utf8(
        net.router
            .command("nft")
            .args(["list", "set", "inet", "fw4", "ntpgate_lan6"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        listing.contains(&format!("{LAN_HOST} counter packets 1 bytes")),
        "per-hole counters: {listing}"
    );

    // The router's own server, open while its port is in the set.
    net.nft("add element inet fw4 ntpgate_router { 123 timeout 60s }");
    assert!(net.answers(ROUTER_WAN, 123));
    net.nft("delete element inet fw4 ntpgate_router { 123 }");
    assert!(!net.answers(ROUTER_WAN, 123));

    // fw4 reload (the ruleset again, with its flush): the holes stay.
    net.load_ruleset();
    assert!(net.answers(LAN_HOST, 123), "a reload closed the pinhole");
    // fw4 restart (the table deleted and created): the holes are gone
    // until the daemon adds them again.
    net.nft("delete table inet fw4");
    net.load_ruleset();
    assert!(!net.answers(LAN_HOST, 123), "a restart kept the pinhole");

    // Fail closed: an element nobody refreshes expires by itself.
    net.nft(&format!(
        "add element inet fw4 ntpgate_lan6 {{ {LAN_HOST} timeout 2s }}"
    ));
    assert!(net.answers(LAN_HOST, 123));
    let took = within(Duration::from_secs(5), || !net.answers(LAN_HOST, 123))
        .expect("the expired pinhole is still open");
    assert!(
        took >= Duration::from_millis(1000),
        "closed after {took:?}, before its timeout"
    );

    // The LAN side is untouched: the LAN host still reaches the router.
    let out = net
        .lan
        .command(BIN)
        .args(["query", "--timeout", "0.5", &format!("[{ROUTER_LAN}]:123")])
        .output()
        .unwrap();
    assert!(out.status.success(), "LAN to router NTP");
}
