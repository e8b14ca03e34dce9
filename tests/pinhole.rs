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
    // The traffic through the hole is counted across refreshes (the
    // element is replaced with a fresh timeout, and fresh counters): ask,
    // see the element refreshed, ask again.
    for _ in 0..3 {
        assert!(net.answers(LAN_HOST, 123));
    }
    // `elements = { 2001:db8:1::50 counter packets 3 bytes 228 timeout 6s expires 5s }`
    let counted = || {
        let listing = net.elements("ntpgate_lan6");
        listing
            .split("packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no counter in {listing}"))
    };
    let before = counted();
    assert!(before >= 1, "{}", net.elements("ntpgate_lan6"));
    within(Duration::from_secs(10), || counted() < before).expect("the element refreshed");
    assert!(net.answers(LAN_HOST, 123));
    // The status counts what the sets held at their last check. The
    // queries from the WAN pass the hole (the replies and the health
    // checks go the other way and are not counted there).
    let mut line = String::new();
    within(Duration::from_secs(10), || {
        line = d.usr1_line("notice: pinhole: nas");
        field(&line, "packets") >= 5
    })
    .unwrap_or_else(|| panic!("4 queries and 1 more not counted: {line}"));
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
    // Logged once the firewall holds it, which the check above may beat.
    d.wait_for_log(
        |l| l.contains("pinhole nas: closed: health check failed"),
        "the health check's verdict",
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

/// From `source` in the WAN namespace, send `count` NTP requests to
/// `[target]:123`, evenly over `over`; the number of replies.
fn send_from(net: &Network, source: &str, target: &str, count: u64, over: Duration) -> u64 {
    net.wan.run(|| {
        let socket = std::net::UdpSocket::bind(format!("[{source}]:0")).expect("bind");
        socket.connect(format!("[{target}]:123")).expect("connect");
        socket.set_nonblocking(true).unwrap();
        let (start, gap) = (Instant::now(), over / count as u32);
        let mut replies = 0;
        let mut buf = [0u8; 512];
        let mut drain = |replies: &mut u64| {
            while socket.recv(&mut buf).is_ok() {
                *replies += 1;
            }
        };
        for n in 0..count {
            socket.send(&request(4, 3, 6, n + 1)).expect("send");
            drain(&mut replies);
            if let Some(wait) =
                (start + gap * (n as u32 + 1)).checked_duration_since(Instant::now())
            {
                std::thread::sleep(wait);
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        drain(&mut replies);
        replies
    })
}

/// ntpgate serving on the LAN host's port 123 without its own rate limit,
/// so that what limits the flood is the firewall.
fn lan_server(net: &Network) -> Daemon {
    Daemon::start_with(
        net.lan.command(BIN),
        "config server\n\tlist listen '::'\n\toption port '123'\n\toption local_stratum '3'\n\toption ratelimit '0'\n",
        1,
    )
}

#[test]
fn per_source_rate_limit_drops_a_flood_and_spares_other_sources() {
    let net = Network::build();
    let _lan_ntp = lan_server(&net);
    let limited = "config server\n\toption port '123'\n\toption local_stratum '3'\n\toption pinhole_timeout '6'\nconfig pinhole 'nas'\n\toption device 'br-lan'\n\toption suffix '::50'\n\toption limit_pps '10'\n";
    let d = Daemon::start_with(net.router.command(BIN), limited, 1);
    within(Duration::from_secs(10), || net.answers(LAN_HOST, 123)).expect("the pinhole opened");

    // 500 requests in one second from one source, while another source
    // asks five times: the flood is cut to about 10/s (plus a burst of
    // 10), the other source is answered every time.
    let (flood, other) = std::thread::scope(|s| {
        let flood = s.spawn(|| send_from(&net, WAN_HOST, LAN_HOST, 500, Duration::from_secs(1)));
        let other =
            s.spawn(|| send_from(&net, OTHER_WAN_HOST, LAN_HOST, 5, Duration::from_secs(1)));
        (flood.join().unwrap(), other.join().unwrap())
    });
    println!("flood: 500 sent, {flood} answered; other source: 5 sent, {other} answered");
    assert!((10..=40).contains(&flood), "flood answered {flood} times");
    assert_eq!(other, 5, "the other source was limited too");
    let mut line = String::new();
    within(Duration::from_secs(10), || {
        line = d.usr1_line("notice: pinhole: nas");
        field(&line, "limited") >= 450
    })
    .unwrap_or_else(|| panic!("the flood's drops not counted: {line}"));

    // The limit taken out of the config (SIGHUP): the same flood passes.
    std::fs::write(
        &d.config_path,
        limited.replace("\toption limit_pps '10'\n", ""),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for_log(
        |l| l.contains("reload: configuration applied"),
        "the reload",
    );
    within(Duration::from_secs(4), || {
        !net.nft("list chain inet fw4 ntpgate_limit")
            .contains("limit rate")
    })
    .expect("the limit rule removed");
    let flood = send_from(&net, WAN_HOST, LAN_HOST, 500, Duration::from_secs(1));
    println!("without the limit: 500 sent, {flood} answered");
    assert!(flood >= 490, "unlimited flood answered {flood} times");

    // A clean stop leaves fw4's objects as the include files made them.
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(
        !net.nft("list chain inet fw4 ntpgate_limit")
            .contains("limit rate")
    );
}

/// A firewall without fw4: one filter table of the user's, which the
/// daemon adds its sets, chain and rules to (`create`), and from which it
/// takes them all away again on a clean stop.
/// The user has rules of their own whose comments start like ours.
const PLAIN_RULESET: &str = "flush ruleset
table ip6 filter {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iifname { \"lo\", \"br-lan\" } accept
		icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert, echo-request } accept
		ip6 saddr fd00::/8 udp dport 123 counter accept comment \"ntpgate: NTP from my ULA hosts\"
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname \"br-lan\" accept
		ip6 saddr fd00::/8 udp dport 123 counter accept comment \"ntpgate: my own pinhole\"
	}
}
";

#[test]
fn without_fw4_the_daemon_adds_its_own_sets_and_rules_to_a_named_table() {
    let net = Network::with_ruleset(PLAIN_RULESET, ["ip6", "filter"]);
    let _lan_ntp = lan_server(&net);
    let _lan_other_port = Daemon::start_with(
        net.lan.command(BIN),
        "config server\n\tlist listen '::'\n\toption port '124'\n\toption local_stratum '3'\n",
        1,
    );
    let before = net.listing("ip6", "filter");
    assert!(!net.answers(LAN_HOST, 123), "open without ntpgate");

    let config = "config server\n\tlist listen '::'\n\toption port '123'\n\toption local_stratum '3'\n\toption serve_wan '1'\n\toption pinhole_timeout '6'\nconfig firewall\n\toption family 'ip6'\n\toption table 'filter'\n\toption create '1'\nconfig pinhole 'nas'\n\toption device 'br-lan'\n\toption suffix '::50'\n\toption limit_pps '100'\n";
    let d = Daemon::start_with(net.router.command(BIN), config, 1);
    within(Duration::from_secs(10), || net.answers(LAN_HOST, 123))
        .unwrap_or_else(|| panic!("the pinhole did not open: {}", d.log()));
    assert!(net.answers(ROUTER_WAN, 123), "serve_wan opens the router");
    assert!(!net.answers(LAN_HOST, 124), "another port is open");
    assert!(!net.answers(OTHER_LAN_HOST, 123), "another host is open");
    let listing = net.nft("list table ip6 filter");
    for ours in [
        "set ntpgate_lan6",
        "set ntpgate_router",
        "set ntpgate_flood",
        "chain ntpgate_limit",
        "jump ntpgate_limit comment \"ntpgate",
        "limit rate over 100/second",
    ] {
        assert!(listing.contains(ours), "{ours} missing in {listing}");
    }
    // The jump to the limits comes before the accept.
    let jump = listing.find("jump ntpgate_limit").unwrap();
    assert!(
        jump < listing.find("ip6 daddr @ntpgate_lan6").unwrap(),
        "{listing}"
    );

    // The user's firewall reloads (flush ruleset, its own rules again): the
    // daemon adds its part back within a few seconds.
    net.load_ruleset();
    let took = within(Duration::from_secs(6), || net.answers(LAN_HOST, 123))
        .expect("restored after the firewall reload");
    println!("restored {took:?} after a reload of the user's firewall");
    assert!(d.log().contains("pinholes: added"), "{}", d.log());

    // A clean stop takes everything of ours away, and only that (the
    // user's "ntpgate: ..." rules stay): the table is as it was.
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert_eq!(net.listing("ip6", "filter"), before, "{log}");
    assert!(!net.answers(LAN_HOST, 123));
}

fn write_config(text: &str) -> std::path::PathBuf {
    let path = scratch_dir().join("ntpgate");
    std::fs::write(&path, text).unwrap();
    path
}

/// `ntpgate run` that must refuse to start: its exit status and output.
fn refused_run(cmd: &mut Command) -> (std::process::ExitStatus, String) {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let gone = within(Duration::from_secs(5), || {
        child.try_wait().unwrap().is_some()
    });
    if gone.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(gone.is_some(), "the daemon started");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// fw4's own chain named as ours: `check` refuses it on its line and the
/// daemon does not start (it used to flush fw4's input chain: 5 rules to
/// 0, policy drop, still empty after a clean stop).
#[test]
fn a_chain_of_fw4s_is_refused_by_check_and_at_start() {
    let net = Network::build();
    let before = net.listing("inet", "fw4");
    let path = write_config(
        "config server\n\toption port '123'\n\toption local_stratum '3'\nconfig firewall\n\toption limit_chain 'input'\nconfig pinhole 'nas'\n\toption device 'br-lan'\n\toption suffix '::50'\n\toption limit_pps '10'\n",
    );
    let check = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "{}:5: error: firewall: limit_chain: 'input' is one of fw4's own chains",
            path.display()
        )),
        "{said}"
    );
    let (status, log) = refused_run(net.router.command(BIN).args(["run", "--config"]).arg(&path));
    assert!(!status.success(), "{log}");
    assert!(log.contains("configuration refused"), "{log}");
    assert_eq!(net.listing("inet", "fw4"), before);
}

/// A chain of the user's (in fw4's table) named as our limit chain: the
/// daemon says so and writes nothing, neither there nor anywhere else.
#[test]
fn a_chain_that_is_not_ours_is_never_written_to() {
    let net = Network::build();
    net.nft("add chain inet fw4 user_limits");
    net.nft(
        "add rule inet fw4 user_limits udp dport 4123 counter accept comment \"ntpgate: mine\"",
    );
    let before = net.listing("inet", "fw4");
    let _lan_ntp = lan_server(&net);
    let config = "config server\n\toption port '123'\n\toption local_stratum '3'\n\toption pinhole_timeout '6'\nconfig firewall\n\toption limit_chain 'user_limits'\nconfig pinhole 'nas'\n\toption device 'br-lan'\n\toption suffix '::50'\n\toption limit_pps '10'\n";
    let d = Daemon::start_with(net.router.command(BIN), config, 1);
    // Once the daemon has looked (and refused), nothing has been written,
    // and the status does not call the hole open.
    d.wait_for_log(|l| l.contains("refusing to write"), "the refusal");
    let line = d.usr1_line("notice: pinhole: nas");
    assert!(
        line.contains("closed") && line.contains("the firewall was not written"),
        "{line}"
    );
    assert_eq!(net.listing("inet", "fw4"), before, "{}", d.log());
    assert!(!net.answers(LAN_HOST, 123));
    assert!(
        d.log().contains(
            "refusing to write to the firewall: chain inet fw4 user_limits is not ntpgate's"
        ),
        "{}",
        d.log()
    );
    assert_eq!(
        d.log().matches("error: pinholes: refusing").count(),
        1,
        "said once: {}",
        d.log()
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert_eq!(net.listing("inet", "fw4"), before, "{log}");
}

/// With fw4 a clean stop leaves fw4's table exactly as it was: someone
/// else's element in our set and a rule of the user's that looks like ours
/// are left alone while the daemon runs and when it stops, and the rate
/// limits' state goes with the daemon.
#[test]
fn a_clean_stop_leaves_fw4s_table_as_it_found_it() {
    let net = Network::build();
    net.nft(&format!(
        "add element inet fw4 ntpgate_lan6 {{ {OTHER_LAN_HOST} timeout 1h }}"
    ));
    net.nft("insert rule inet fw4 input_wan udp dport 4123 counter accept comment \"ntpgate: my own rule\"");
    let before = net.listing("inet", "fw4");
    let _lan_ntp = lan_server(&net);
    let config = "config server\n\toption port '123'\n\toption local_stratum '3'\n\toption serve_wan '1'\n\toption pinhole_timeout '6'\nconfig pinhole 'nas'\n\toption device 'br-lan'\n\toption suffix '::50'\n\toption limit_pps '10'\n";
    let (d, nft_log) = recorded_daemon(&net, config);
    within(Duration::from_secs(10), || net.answers(LAN_HOST, 123)).expect("the pinhole opened");
    assert!(net.answers(ROUTER_WAN, 123));
    send_from(&net, WAN_HOST, LAN_HOST, 50, Duration::from_millis(200));
    assert!(
        net.nft("list set inet fw4 ntpgate_flood")
            .contains(WAN_HOST),
        "the flood left no state"
    );
    // Checks later, the other element is untouched.
    two_more_checks(&nft_log, "ntpgate_lan6");
    let listing = net.nft("list set inet fw4 ntpgate_lan6");
    assert!(listing.contains(OTHER_LAN_HOST), "{listing}");
    assert!(
        net.answers(OTHER_LAN_HOST, 123),
        "someone else's hole closed"
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert_eq!(net.listing("inet", "fw4"), before, "{log}");
}

/// `create` mode with `lan_set` naming a set of the user's (one of their
/// rules uses it), then with `limit_set` naming their map: the daemon
/// refuses, and the table stays as it was, running and after the stop.
#[test]
fn create_mode_never_takes_over_the_users_sets() {
    let ruleset = PLAIN_RULESET.replace(
        "table ip6 filter {\n",
        "table ip6 filter {\n\tset trusted {\n\t\ttype ipv6_addr\n\t\telements = { 2001:db8:1000::99 }\n\t}\n\tmap blocked {\n\t\ttype ipv6_addr : verdict\n\t}\n",
    )
    .replace(
        "\t\tiifname \"br-lan\" accept\n",
        "\t\tiifname \"br-lan\" accept\n\t\tip6 saddr @trusted accept comment \"ntpgate: trusted hosts\"\n\t\tip6 daddr vmap @blocked\n",
    );
    let net = Network::with_ruleset(&ruleset, ["ip6", "filter"]);
    let _lan_ntp = lan_server(&net);
    let before = net.listing("ip6", "filter");
    let base = "config server\n\toption port '123'\n\toption local_stratum '3'\n\toption serve_wan '1'\n\toption pinhole_timeout '6'\nconfig firewall\n\toption family 'ip6'\n\toption table 'filter'\n\toption create '1'\n";
    let pinhole = "config pinhole 'nas'\n\toption device 'br-lan'\n\toption suffix '::50'\n\toption limit_pps '10'\n";

    let (d, nft_log) = recorded_daemon(
        &net,
        &format!("{base}\toption lan_set 'trusted'\n{pinhole}"),
    );
    d.wait_for_log(|l| l.contains("refusing to write"), "the refusal");
    two_more_checks(&nft_log, "trusted");
    assert_eq!(net.listing("ip6", "filter"), before, "{}", d.log());
    assert!(!net.answers(LAN_HOST, 123));
    assert!(
        d.log()
            .contains("refusing to write to the firewall: set ip6 filter trusted is not ntpgate's"),
        "{}",
        d.log()
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert_eq!(net.listing("ip6", "filter"), before, "{log}");

    // A map under the flood set's name: adding the set fails as a whole.
    let (d, nft_log) = recorded_daemon(
        &net,
        &format!("{base}\toption limit_set 'blocked'\n{pinhole}"),
    );
    d.wait_for_log(|l| l.contains("pinholes: cannot add"), "the failure");
    two_more_checks(&nft_log, "ntpgate_lan6");
    assert_eq!(net.listing("ip6", "filter"), before, "{}", d.log());
    assert_eq!(
        d.log().matches("pinholes: cannot add").count(),
        1,
        "said once: {}",
        d.log()
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert_eq!(net.listing("ip6", "filter"), before, "{log}");
}

/// A directory with an `nft` script to put first on the daemon's PATH.
fn nft_stand_in(script: &str) -> (std::path::PathBuf, String) {
    let real = require("nft", "nftables");
    let dir = scratch_dir();
    let nft = dir.join("nft");
    std::fs::write(
        &nft,
        script
            .replace("REAL_NFT", &real.display().to_string())
            .replace("DIR", &dir.display().to_string()),
    )
    .unwrap();
    std::fs::set_permissions(&nft, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    (dir, path)
}

/// Stand-in for a wedged nft: while the file `wedged` exists, each new run
/// hangs without a word and does not end by itself (as nft does when the
/// kernel's netlink transaction it waits on never completes); otherwise it
/// is the real nft, unchanged. A run that started wedged stays wedged.
const WEDGED_NFT: &str = "#!/bin/sh
if [ -e DIR/wedged ]; then exec sleep 30; fi
exec REAL_NFT \"$@\"
";

/// A wedged nft costs the holes their refresh but not the daemon: each
/// run is killed past its bound, the next check tries again, and SIGTERM
/// completes while nft is still wedged.
#[test]
fn a_wedged_nft_is_killed_retried_and_never_holds_up_a_stop() {
    let net = Network::build();
    let _lan_ntp = lan_server(&net);
    let (dir, path) = nft_stand_in(WEDGED_NFT);
    let wedged = dir.join("wedged");
    let config = "config server\n\toption port '123'\n\toption local_stratum '3'\n\toption pinhole_timeout '6'\nconfig pinhole 'nas'\n\toption device 'br-lan'\n\toption suffix '::50'\n";
    let mut cmd = net.router.command(BIN);
    cmd.env("PATH", &path);
    let d = Daemon::start_with(cmd, config, 1);
    within(Duration::from_secs(10), || net.answers(LAN_HOST, 123)).expect("the pinhole opened");

    std::fs::write(&wedged, "").unwrap();
    within(Duration::from_secs(10), || {
        !net.elements("ntpgate_lan6").contains(LAN_HOST)
    })
    .expect("the unrefreshed hole lapsed");

    // nft works again: a check within seconds puts the hole back.
    std::fs::remove_file(&wedged).unwrap();
    let took = within(Duration::from_secs(8), || net.answers(LAN_HOST, 123))
        .unwrap_or_else(|| panic!("not retried: {}", d.log()));
    println!("hole back {took:?} after nft came back");
    assert!(
        d.log().contains("did not finish within 3 s: killed"),
        "{}",
        d.log()
    );

    std::fs::write(&wedged, "").unwrap();
    let asked = Instant::now();
    let (status, log) = d
        .stop_within(Duration::from_secs(8))
        .expect("SIGTERM did not complete with nft wedged");
    println!("stopped {:?} after SIGTERM, nft wedged", asked.elapsed());
    assert!(status.success(), "{log}");
    assert!(log.contains("pinholes: cannot close"), "{log}");
}

/// Stand-in that records: the real nft with the same arguments and input,
/// unchanged, and a line in `nft.log` for each run: the bytes it printed
/// and its arguments.
const RECORDING_NFT: &str = "#!/bin/sh
out=$(mktemp)
REAL_NFT \"$@\" >\"$out\"
status=$?
echo \"$(wc -c <\"$out\") $*\" >>DIR/nft.log
cat \"$out\"
rm -f \"$out\"
exit $status
";

/// The daemon in the router with [`RECORDING_NFT`] first on its PATH, so
/// that a test can wait for its checks (each reads the firewall).
fn recorded_daemon(net: &Network, config: &str) -> (Daemon, std::path::PathBuf) {
    let (dir, path) = nft_stand_in(RECORDING_NFT);
    let mut cmd = net.router.command(BIN);
    cmd.env("PATH", &path);
    (Daemon::start_with(cmd, config, 1), dir.join("nft.log"))
}

/// Wait (up to 20 s) until the daemon ran `nft ... list ... {what}` twice
/// more: two checks went by.
fn two_more_checks(log: &std::path::Path, what: &str) {
    let count = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" list ") && l.ends_with(what))
            .count()
    };
    let before = count();
    within(Duration::from_secs(20), || count() >= before + 2)
        .unwrap_or_else(|| panic!("no two checks of {what}"));
}

/// In `create` mode the flood set (up to 65535 elements in a flood) is
/// checked for being there and ours, never listed whole.
#[test]
fn the_flood_set_is_never_listed_whole() {
    let net = Network::with_ruleset(PLAIN_RULESET, ["ip6", "filter"]);
    let _lan_ntp = lan_server(&net);
    let config = "config server\n\toption port '123'\n\toption local_stratum '3'\n\toption pinhole_timeout '6'\nconfig firewall\n\toption family 'ip6'\n\toption table 'filter'\n\toption create '1'\nconfig pinhole 'nas'\n\toption device 'br-lan'\n\toption suffix '::50'\n\toption limit_pps '100'\n";
    let (d, log_file) = recorded_daemon(&net, config);
    let dir = log_file.parent().unwrap().to_path_buf();
    within(Duration::from_secs(10), || net.answers(LAN_HOST, 123)).expect("the pinhole opened");

    // The state a flood from 20000 sources leaves.
    let sources: Vec<String> = (1..=20000)
        .map(|i| format!("2001:db8:f::{i:x} . {LAN_HOST}"))
        .collect();
    let file = dir.join("flood.nft");
    std::fs::write(
        &file,
        format!(
            "add element ip6 filter ntpgate_flood {{ {} }}\n",
            sources.join(", ")
        ),
    )
    .unwrap();
    run_ok(net.router.command("nft").arg("-f").arg(&file));
    let whole = net.nft("list set ip6 filter ntpgate_flood").len();
    assert!(whole > 500_000, "the flood set lists in {whole} bytes");

    std::fs::write(&log_file, "").unwrap();
    two_more_checks(&log_file, "ntpgate_flood");
    let runs = std::fs::read_to_string(&log_file).unwrap();
    let flood_checks = runs
        .lines()
        .filter(|l| l.ends_with("list set ip6 filter ntpgate_flood"))
        .count();
    assert!(flood_checks >= 2, "the flood set not checked: {runs}");
    let largest = runs
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    println!("largest nft answer during a flood: {largest} bytes (the whole set: {whole})");
    assert!(largest < 10_000, "{runs}");
    // Seen there and ours: not added again, the hole still open.
    assert_eq!(d.log().matches("pinholes: added").count(), 1, "{}", d.log());
    assert!(net.answers(LAN_HOST, 123));
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
}

/// A pinhole pointed at another host by a reload does not open on the old
/// host's health check: its address waits for its own (and nothing
/// answers there).
#[test]
fn a_retargeted_pinhole_waits_for_its_own_health_check() {
    let net = Network::build();
    let _lan_ntp = lan_server(&net);
    let config = "config server\n\toption port '123'\n\toption local_stratum '3'\n\toption pinhole_timeout '6'\nconfig pinhole 'nas'\n\toption device 'br-lan'\n\toption suffix '::50'\n\toption health_check '1'\n\toption health_interval '60'\n";
    let d = Daemon::start_with(net.router.command(BIN), config, 1);
    within(Duration::from_secs(10), || net.answers(LAN_HOST, 123)).expect("the pinhole opened");
    let nobody = "2001:db8:1000::52";
    std::fs::write(&d.config_path, config.replace("::50", "::52")).unwrap();
    d.signal("HUP");
    d.wait_for_log(
        |l| l.contains("reload: configuration applied"),
        "the reload",
    );
    let opened = within(Duration::from_secs(4), || {
        net.elements("ntpgate_lan6").contains(nobody)
    });
    assert!(opened.is_none(), "opened unchecked: {}", d.log());
    d.wait_for_log(
        |l| l.contains("pinhole nas: closed: health check failed"),
        "the failed check",
    );
    assert!(!net.elements("ntpgate_lan6").contains(LAN_HOST));
}

/// A reload that turns a pinhole's health check off and on again does not
/// bring back the verdict from before: the host, gone quiet meanwhile,
/// closes at once rather than when its next check gives up.
#[test]
fn a_health_check_turned_on_again_starts_from_no_verdict() {
    let net = Network::build();
    let _lan_ntp = lan_server(&net);
    let checked = "config server\n\toption port '123'\n\toption local_stratum '3'\n\toption pinhole_timeout '6'\nconfig pinhole 'nas'\n\toption device 'br-lan'\n\toption suffix '::50'\n\toption health_check '1'\n\toption health_interval '60'\n";
    let d = Daemon::start_with(net.router.command(BIN), checked, 1);
    within(Duration::from_secs(10), || net.answers(LAN_HOST, 123)).expect("the pinhole opened");
    let reload = |config: &str| {
        let before = d.log().matches("reload: configuration applied").count();
        std::fs::write(&d.config_path, config).unwrap();
        d.signal("HUP");
        d.wait_for_log(
            |l| l.matches("reload: configuration applied").count() > before,
            "the reload",
        );
    };
    reload(&checked.replace("\toption health_check '1'\n", ""));
    // The host goes quiet: its check will take the whole 2 s to fail.
    run_ok(net.lan.command("nft").arg(
        "add table inet quiet; add chain inet quiet input { type filter hook input priority 0; udp dport 123 drop; }",
    ));
    reload(checked);
    let took = within(Duration::from_secs(4), || {
        !net.elements("ntpgate_lan6").contains(LAN_HOST)
    })
    .expect("the hole stayed open");
    println!("closed {took:?} after the reload");
    assert!(
        took < Duration::from_millis(1000),
        "open on an old verdict for {took:?}"
    );
}
