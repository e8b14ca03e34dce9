//! The daemon's whole job as a non-root user holding exactly the three
//! capabilities of the package's procd capabilities file (CAP_SYS_TIME,
//! CAP_NET_BIND_SERVICE, CAP_NET_ADMIN) and no_new_privs, as ujail starts
//! it on the router; here `setpriv` does what ujail does, in the router
//! namespace of the pinhole tests: port 123, the netlink watch, the fw4
//! sets through nft (which inherits the ambient capabilities), answered
//! from the WAN.

mod common;

use std::process::Command;
use std::time::Duration;

use common::lan::*;
use common::*;

/// The unprivileged user: Debian's `nobody`.
const UID: &str = "65534";
const CAPS: &str = "+sys_time,+net_bind_service,+net_admin";

/// ntpgate as a user holding `caps` and nothing else. They must be ambient
/// to survive the exec (ujail sets every set from the capabilities file
/// the same way), which also passes them on to nft.
fn setpriv(net: &Network, caps: &str) -> Command {
    let mut c = net.router.command(require("setpriv", "util-linux"));
    c.args([
        &format!("--reuid={UID}"),
        &format!("--regid={UID}"),
        "--clear-groups",
        &format!("--bounding-set=-all,{caps}"),
        &format!("--inh-caps=-all,{caps}"),
        &format!("--ambient-caps=-all,{caps}"),
        "--no-new-privs",
        "--",
        BIN,
    ]);
    c
}

fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

const CONFIG: &str = "config server\n\tlist listen '::'\n\toption port '123'\n\toption local_stratum '3'\n\toption serve_wan '1'\n\toption pinhole_timeout '6'\nconfig pinhole 'nas'\n\toption device 'br-lan'\n\toption suffix '::50'\n";

#[test]
fn the_whole_job_with_exactly_three_capabilities() {
    let net = Network::build();
    let _lan_ntp = Daemon::start_with(
        net.lan.command(BIN),
        "config server\n\tlist listen '::'\n\toption port '123'\n\toption local_stratum '2'\n",
        1,
    );
    let d = Daemon::start_with(setpriv(&net, CAPS), CONFIG, 1);
    // `ip netns exec` runs setpriv, which execs ntpgate: the daemon's pid.
    let pid = d.pid();
    assert_eq!(
        status_field(pid, "Uid").split_whitespace().next(),
        Some(UID)
    );
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    let effective = u64::from_str_radix(&status_field(pid, "CapEff"), 16).unwrap();
    let (sys_time, net_bind_service, net_admin) = (1u64 << 25, 1u64 << 10, 1u64 << 12);
    assert_eq!(effective, sys_time | net_bind_service | net_admin);

    within(Duration::from_secs(10), || net.answers(LAN_HOST, 123))
        .unwrap_or_else(|| panic!("the pinhole did not open: {}", d.log()));
    assert!(
        net.answers(ROUTER_WAN, 123),
        "the router's server on port 123"
    );
    assert!(net.elements("ntpgate_lan6").contains(LAN_HOST));
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(
        net.elements("ntpgate_lan6").is_empty(),
        "a clean stop closes: {log}"
    );
    assert!(!log.contains("warning: pinholes"), "{log}");
}

#[test]
fn each_capability_is_needed() {
    let net = Network::build();
    // Without CAP_NET_BIND_SERVICE: port 123 cannot be bound.
    let out = setpriv(&net, "+sys_time,+net_admin")
        .args(["run", "--config"])
        .arg({
            let path = scratch_dir().join("no-bind.conf");
            std::fs::write(&path, CONFIG).unwrap();
            path
        })
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("Permission denied"), "{log}");

    // Without CAP_NET_ADMIN: nft cannot read or write the sets, and the
    // daemon says so.
    let d = Daemon::start_with(setpriv(&net, "+sys_time,+net_bind_service"), CONFIG, 1);
    d.wait_for_log(
        |l| l.contains("warning: pinholes:"),
        "a warning that nft failed",
    );
    assert!(net.elements("ntpgate_lan6").is_empty());
}
