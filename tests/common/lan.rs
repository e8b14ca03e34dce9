//! The test network of the firewall tests: a `wan` namespace (the internet
//! side), a `router` with OpenWrt's interface names (`pppoe-wan`, `br-lan`)
//! and forwarding on, loaded with OpenWrt's real fw4 ruleset and the
//! package's include files, and a `lan` host.

use std::path::Path;
use std::process::Command;

use super::*;

pub const ROUTER_WAN: &str = "2001:db8:54:321::1";
pub const WAN_HOST: &str = "2001:db8:54:321::2";
/// A second source on the WAN side.
pub const OTHER_WAN_HOST: &str = "2001:db8:54:321::3";
pub const ROUTER_LAN: &str = "2001:db8:1000::1";
pub const LAN_HOST: &str = "2001:db8:1000::50";
/// A second LAN host (an address of the lan namespace) with no pinhole.
pub const OTHER_LAN_HOST: &str = "2001:db8:1000::51";

/// The fixture rendered by fw4, with our include files and without the
/// `rtsp` conntrack helper this kernel lacks (see the fixture's README).
pub fn fw4_ruleset() -> String {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/fw4/default-with-ntpgate-includes.nft");
    let text =
        std::fs::read_to_string(&fixture).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
    let ours =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("openwrt-package/ntpgate/files/nftables.d/");
    let mut out = Vec::new();
    let mut in_rtsp_helper = false;
    let mut in_forward = false;
    for line in text.lines() {
        // The fixture was rendered before the package had a chain-pre
        // include for the forward chain; fw4 puts the line for one where
        // the template's chain-prepend includes go, before the
        // established-flows rule.
        if line == "\tchain forward {" {
            in_forward = true;
        } else if in_forward && line.contains("ct state vmap") {
            out.push("\t\tinclude \"/usr/share/nftables.d/chain-pre/forward/30-ntpgate.nft\"");
            in_forward = false;
        }
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
    (out.join("\n") + "\n").replace("/usr/share/nftables.d/", &format!("{}/", ours.display()))
}

pub struct Network {
    pub wan: Netns,
    pub router: Netns,
    pub lan: Netns,
    ruleset: std::path::PathBuf,
    /// Where our sets are: `inet fw4`, or the table of a create-mode test.
    sets_in: [&'static str; 2],
}

impl Network {
    /// The router loaded with fw4's ruleset.
    pub fn build() -> Network {
        Network::with_ruleset(&fw4_ruleset(), ["inet", "fw4"])
    }

    /// The router loaded with `ruleset`; our sets live in `sets_in`.
    pub fn with_ruleset(ruleset: &str, sets_in: [&'static str; 2]) -> Network {
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
            (&wan, "eth0", vec![WAN_HOST, OTHER_WAN_HOST]),
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
        let path = scratch_dir().join("ruleset.nft");
        std::fs::write(&path, ruleset).unwrap();
        let net = Network {
            wan,
            router,
            lan,
            ruleset: path,
            sets_in,
        };
        net.load_ruleset();
        net
    }

    /// The ruleset again: with fw4's, what `fw4 reload` does (it starts
    /// with `flush table inet fw4`).
    pub fn load_ruleset(&self) {
        run_ok(self.router.command("nft").arg("-f").arg(&self.ruleset));
    }

    pub fn nft(&self, command: &str) -> String {
        run_ok(self.router.command("nft").arg(command))
    }

    /// `nft -s list table FAMILY TABLE`: the table without its counters
    /// (traffic moves them), to compare before and after.
    pub fn listing(&self, family: &str, table: &str) -> String {
        run_ok(
            self.router
                .command("nft")
                .args(["-s", "list", "table", family, table]),
        )
    }

    /// Does an NTP query from the WAN host to `[addr]:port` get an answer?
    pub fn answers(&self, addr: &str, port: u16) -> bool {
        self.wan
            .command(BIN)
            .args(["query", "--timeout", "1", &format!("[{addr}]:{port}")])
            .output()
            .unwrap()
            .status
            .code()
            == Some(0)
    }

    /// The elements of one of our sets, as nft lists them.
    pub fn elements(&self, set: &str) -> String {
        let out = self
            .router
            .command("nft")
            .args(["list", "set", self.sets_in[0], self.sets_in[1], set])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .filter(|l| l.contains("elements"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
