//! The package's fw4 include files inside OpenWrt's real fw4 ruleset, with
//! real packets: a `wan` namespace (the internet side), a `router` with
//! OpenWrt's interface names (`pppoe-wan`, `br-lan`) and forwarding on, and
//! a `lan` host. The router is loaded with the fw4 fixture, its include
//! paths pointed at `openwrt-package/ntpgate/files/nftables.d/`. Elements
//! are added here with `nft`, as the daemon will: this proves what the
//! sets and rules let through, and what they do not.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const ROUTER_WAN: &str = "2001:db8:54:321::1";
const WAN_HOST: &str = "2001:db8:54:321::2";
const ROUTER_LAN: &str = "2001:db8:1000::1";
const LAN_HOST: &str = "2001:db8:1000::50";
/// A second LAN host (an address of the lan namespace) with no pinhole.
const OTHER_LAN_HOST: &str = "2001:db8:1000::51";

/// The fixture rendered by fw4, with our include files and without the
/// `rtsp` conntrack helper this kernel lacks (see the fixture's README).
fn fw4_ruleset() -> String {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/fw4/default-with-ntpgate-includes.nft");
    let text =
        std::fs::read_to_string(&fixture).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
    let ours =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("openwrt-package/ntpgate/files/nftables.d/");
    let text = text.replace("/usr/share/nftables.d/", &format!("{}/", ours.display()));
    let mut out = Vec::new();
    let mut in_rtsp_helper = false;
    for line in text.lines() {
        if line.contains("ct helper rtsp {") {
            in_rtsp_helper = true;
            continue;
        }
        if in_rtsp_helper {
            in_rtsp_helper = !line.trim_start().starts_with('}');
            continue;
        }
        if line.contains("ct helper set \"rtsp\"") {
            continue;
        }
        out.push(line);
    }
    out.join("\n") + "\n"
}

struct Network {
    wan: Netns,
    router: Netns,
    lan: Netns,
    ruleset: std::path::PathBuf,
}

impl Network {
    fn build() -> Network {
        require("nft", "nftables");
        let (wan, router, lan) = (Netns::new(), Netns::new(), Netns::new());
        // No duplicate address detection: the link-local addresses are
        // usable at once, so neighbour discovery works from the first packet.
        for ns in [&wan, &router, &lan] {
            run_ok(ns.command("sysctl").args([
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ]));
        }
        let ip = |ns: &Netns, args: &[&str]| {
            run_ok(Command::new("ip").arg("-n").arg(&ns.name).args(args));
        };
        ip(
            &router,
            &[
                "link",
                "add",
                "pppoe-wan",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &wan.name,
            ],
        );
        ip(
            &router,
            &[
                "link", "add", "br-lan", "type", "veth", "peer", "name", "eth0", "netns", &lan.name,
            ],
        );
        for (ns, dev, addrs) in [
            (&router, "pppoe-wan", vec![ROUTER_WAN]),
            (&router, "br-lan", vec![ROUTER_LAN]),
            (&wan, "eth0", vec![WAN_HOST]),
            (&lan, "eth0", vec![LAN_HOST, OTHER_LAN_HOST]),
        ] {
            for a in addrs {
                ip(
                    ns,
                    &["addr", "add", &format!("{a}/64"), "dev", dev, "nodad"],
                );
            }
            ip(ns, &["link", "set", dev, "up"]);
        }
        ip(&wan, &["-6", "route", "add", "default", "via", ROUTER_WAN]);
        ip(&lan, &["-6", "route", "add", "default", "via", ROUTER_LAN]);
        run_ok(
            router
                .command("sysctl")
                .args(["-qw", "net.ipv6.conf.all.forwarding=1"]),
        );
        let ruleset = scratch_dir().join("fw4.nft");
        std::fs::write(&ruleset, fw4_ruleset()).unwrap();
        let net = Network {
            wan,
            router,
            lan,
            ruleset,
        };
        net.load_ruleset();
        net
    }

    /// What `fw4 reload` does: the whole ruleset again, starting with
    /// `flush table inet fw4`.
    fn load_ruleset(&self) {
        run_ok(self.router.command("nft").arg("-f").arg(&self.ruleset));
    }

    fn nft(&self, command: &str) {
        run_ok(self.router.command("nft").arg(command));
    }

    /// Does an NTP query from the WAN host to `[addr]:port` get an answer?
    fn answers(&self, addr: &str, port: u16) -> bool {
        self.wan
            .command(BIN)
            .args(["query", "--timeout", "1", &format!("[{addr}]:{port}")])
            .output()
            .unwrap()
            .status
            .code()
            == Some(0)
    }
}

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
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !net.answers(LAN_HOST, 123),
        "the expired pinhole is still open"
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
