//! ntpgate keeping the IPv6 pinholes of a router right, end to end: the
//! daemon runs in the router namespace (real fw4 ruleset, see common::lan),
//! a real NTP server (chronyd, -x) on the LAN host, and real NTP queries
//! from the WAN side decide every assertion.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::lan::*;
use common::*;

/// chronyd serving on the LAN host's port 123 (`local stratum 2`; -x: it
/// never touches the clock).
struct LanChronyd {
    child: Child,
}

impl LanChronyd {
    fn start(net: &Network) -> LanChronyd {
        let chronyd = require("chronyd", "chrony");
        let (child, _) = spawn_chronyd(net.lan.command(chronyd), 123, 2, "allow all\n");
        LanChronyd { child }
    }
}

impl Drop for LanChronyd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn within(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

const NEW_ROUTER_LAN: &str = "2001:db8:2000::1";
const NEW_LAN_HOST: &str = "2001:db8:2000::50";

fn config() -> String {
    "config server\n\tlist listen '::'\n\toption port '123'\n\toption local_stratum '3'\n\toption serve_wan '1'\n\toption pinhole_timeout '6'\nconfig pinhole 'nas'\n\toption device 'br-lan'\n\toption suffix '::50'\n\toption health_check '1'\n\toption health_interval '1'\n".to_string()
}

#[test]
fn pinholes_follow_the_lan_and_close_when_they_should() {
    let net = Network::build();
    let mut lan_ntp = LanChronyd::start(&net);
    // Another port on the same host, which must stay closed.
    let _other_port = Daemon::start_with(
        net.lan.command(BIN),
        "config server\n\tlist listen '::'\n\toption port '124'\n\toption local_stratum '3'\n",
        1,
    );
    let d = Daemon::start_with(net.router.command(BIN), &config(), 1);

    // The hole opens once the health check has seen chronyd answer.
    let took =
        within(Duration::from_secs(10), || net.answers(LAN_HOST, 123)).expect("the pinhole opened");
    println!("pinhole open after {took:?}");
    assert!(
        net.elements("ntpgate_lan6").contains(LAN_HOST),
        "{}",
        net.elements("ntpgate_lan6")
    );
    assert!(net.answers(ROUTER_WAN, 123), "serve_wan opens the router");
    assert!(!net.answers(LAN_HOST, 124), "another port is open");
    assert!(!net.answers(OTHER_LAN_HOST, 123), "another host is open");
    assert!(
        d.log()
            .contains(&format!("pinhole nas: open for {LAN_HOST}")),
        "{}",
        d.log()
    );
    // The traffic through the hole is counted across refreshes (every 2 s
    // with a 6 s timeout): ask, wait past a refresh, ask again.
    for _ in 0..3 {
        assert!(net.answers(LAN_HOST, 123));
    }
    std::thread::sleep(Duration::from_millis(2500));
    assert!(net.answers(LAN_HOST, 123));
    // The status counts what the sets held at their last check (2 s).
    std::thread::sleep(Duration::from_millis(2500));
    let line = d.usr1_line("notice: pinhole: nas");
    let packets: u64 = line
        .split("packets=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    // The queries from the WAN pass the hole (the replies and the health
    // checks go the other way and are not counted there).
    assert!(packets >= 5, "{line}");
    assert!(
        line.contains(&format!("open addresses={LAN_HOST}")),
        "{line}"
    );

    // The ISP re-delegates: the LAN moves to a new prefix.
    let ip =
        |ns: &Netns, args: &[&str]| run_ok(Command::new("ip").arg("-n").arg(&ns.name).args(args));
    ip(
        &net.lan,
        &[
            "addr",
            "add",
            &format!("{NEW_LAN_HOST}/64"),
            "dev",
            "eth0",
            "nodad",
        ],
    );
    ip(
        &net.router,
        &[
            "addr",
            "add",
            &format!("{NEW_ROUTER_LAN}/64"),
            "dev",
            "br-lan",
            "nodad",
        ],
    );
    let moved = Instant::now();
    ip(
        &net.router,
        &["addr", "del", &format!("{ROUTER_LAN}/64"), "dev", "br-lan"],
    );
    let took = within(Duration::from_secs(3), || {
        let e = net.elements("ntpgate_lan6");
        e.contains(NEW_LAN_HOST) && !e.contains(LAN_HOST)
    })
    .expect("the hole moved to the new address");
    println!(
        "hole moved {:?} after the prefix change ({took:?} of polling)",
        moved.elapsed()
    );
    assert!(took < Duration::from_secs(1), "moved after {took:?}");
    ip(
        &net.lan,
        &["-6", "route", "replace", "default", "via", NEW_ROUTER_LAN],
    );
    assert!(
        net.answers(NEW_LAN_HOST, 123),
        "the new address answers through the hole"
    );
    assert!(!net.answers(LAN_HOST, 123), "the old address lost its hole");

    // fw4 reload keeps the holes; fw4 restart empties the sets and the
    // daemon fills them again within a few seconds.
    net.load_ruleset();
    assert!(net.answers(NEW_LAN_HOST, 123));
    net.nft("delete table inet fw4");
    net.load_ruleset();
    let took = within(Duration::from_secs(6), || net.answers(NEW_LAN_HOST, 123))
        .expect("restored after an fw4 restart");
    println!("restored {took:?} after an fw4 restart");
    assert!(net.answers(ROUTER_WAN, 123));

    // Health: the LAN server stops, the hole closes; it is back, it reopens.
    drop(lan_ntp);
    within(Duration::from_secs(6), || {
        !net.elements("ntpgate_lan6").contains(NEW_LAN_HOST)
    })
    .expect("closed when the LAN server stopped");
    assert!(
        d.log().contains("pinhole nas: closed: health check failed"),
        "{}",
        d.log()
    );
    lan_ntp = LanChronyd::start(&net);
    within(Duration::from_secs(8), || net.answers(NEW_LAN_HOST, 123))
        .expect("reopened when the LAN server came back");

    // Killed without a word: the holes close by themselves within the
    // element timeout (6 s).
    let killed = Instant::now();
    run_ok(Command::new("kill").args(["-KILL", &d.pid().to_string()]));
    let took = within(Duration::from_secs(9), || {
        net.elements("ntpgate_lan6").is_empty() && net.elements("ntpgate_router").is_empty()
    })
    .expect("the holes closed after the daemon died");
    println!("holes closed {:?} after SIGKILL", killed.elapsed());
    assert!(
        took > Duration::from_secs(1),
        "closed by the timeout, not by anyone: {took:?}"
    );
    assert!(!net.answers(NEW_LAN_HOST, 123));
    drop(d);

    // A clean stop closes them at once.
    let d = Daemon::start_with(net.router.command(BIN), &config(), 1);
    within(Duration::from_secs(10), || net.answers(NEW_LAN_HOST, 123)).expect("open again");
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(
        net.elements("ntpgate_lan6").is_empty(),
        "a clean stop leaves {}",
        net.elements("ntpgate_lan6")
    );
    assert!(net.elements("ntpgate_router").is_empty());
    assert!(log.contains("pinholes closed"), "{log}");
    drop(lan_ntp);
}
