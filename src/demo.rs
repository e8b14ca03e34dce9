//! `ntpgate demo` as root: a small router network in namespaces on this
//! machine, with ntpgate keeping a pinhole open through it.
//!
//! `wan` (the internet side) -- `router` (pppoe-wan, br-lan; forwarding on;
//! an fw4-shaped firewall with the package's include files) -- `lan` (a
//! host serving NTP). The router runs ntpgate with a pinhole for the LAN
//! host; the demo shows a query from the WAN crossing to the LAN host, the
//! hole moving when the LAN prefix changes, and the daemon's status. Every
//! packet stays inside the namespaces; the clock is never touched (both
//! servers serve the local clock as a lab reference). Everything is removed
//! at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PREFIX: &str = "ntpgate-demo";
const ROUTER_WAN: &str = "2001:db8:54:321::1";
const WAN_HOST: &str = "2001:db8:54:321::2";
const OLD_PREFIX: &str = "2001:db8:1000";
const NEW_PREFIX: &str = "2001:db8:2000";

/// The router's firewall: the shape of OpenWrt's fw4 table (input, forward
/// and their WAN zone chains, policy drop, established flows accepted), with
/// the package's include files where fw4 puts them.
fn firewall() -> String {
    let inc = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("\t\t{l}\n"))
            .collect::<String>()
    };
    format!(
        "table inet fw4\nflush table inet fw4\ntable inet fw4 {{\n{table_pre}\n\
         \tchain input {{\n\t\ttype filter hook input priority filter; policy drop;\n\
         \t\tiif \"lo\" accept\n\t\tct state vmap {{ established : accept, related : accept }}\n\
         \t\tiifname \"br-lan\" accept\n\t\tmeta l4proto ipv6-icmp accept\n\
         \t\tiifname \"pppoe-wan\" jump input_wan\n\t}}\n\
         \tchain forward {{\n\t\ttype filter hook forward priority filter; policy drop;\n{forward}\
         \t\tct state vmap {{ established : accept, related : accept }}\n\
         \t\tiifname \"br-lan\" accept\n\t\tiifname \"pppoe-wan\" jump forward_wan\n\t}}\n\
         \tchain input_wan {{\n{input_wan}\t}}\n\
         \tchain forward_wan {{\n{forward_wan}\t}}\n}}\n",
        table_pre =
            include_str!("../openwrt-package/ntpgate/files/nftables.d/table-pre/30-ntpgate.nft"),
        forward = inc(include_str!(
            "../openwrt-package/ntpgate/files/nftables.d/chain-pre/forward/30-ntpgate.nft"
        )),
        input_wan = inc(include_str!(
            "../openwrt-package/ntpgate/files/nftables.d/chain-pre/input_wan/30-ntpgate.nft"
        )),
        forward_wan = inc(include_str!(
            "../openwrt-package/ntpgate/files/nftables.d/chain-pre/forward_wan/30-ntpgate.nft"
        )),
    )
}

/// Run a command; its stdout, or what went wrong.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ns(name: &str) -> String {
    format!("{PREFIX}-{name}")
}

fn ip(netns: &str, args: &str) -> Result<String, String> {
    let ns = ns(netns);
    let mut all = vec!["-n", ns.as_str()];
    all.extend(args.split_whitespace());
    run("ip", &all)
}

fn in_ns(netns: &str, program: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns(netns), program]).args(args);
    c
}

/// The namespaces, the daemons and the scratch directory, removed on drop.
struct Lab {
    dir: PathBuf,
    daemons: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            // SIGTERM: a clean stop, which closes the holes. (SAFETY: no
            // memory preconditions; the pid is a child of ours.)
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let _ = d.wait();
        }
        remove_namespaces();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn remove_namespaces() {
    for n in ["wan", "router", "lan"] {
        let _ = Command::new("ip")
            .args(["netns", "del", &ns(n)])
            .stderr(Stdio::null())
            .status();
    }
}

fn build(lab: &Lab) -> Result<(), String> {
    // A demo interrupted earlier may have left its namespaces behind.
    remove_namespaces();
    for n in ["wan", "router", "lan"] {
        run("ip", &["netns", "add", &ns(n)])?;
        ip(n, "link set lo up")?;
        // Addresses usable at once, without duplicate address detection.
        run(
            "ip",
            &[
                "netns",
                "exec",
                &ns(n),
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ],
        )?;
    }
    ip(
        "router",
        &format!(
            "link add pppoe-wan type veth peer name eth0 netns {}",
            ns("wan")
        ),
    )?;
    ip(
        "router",
        &format!(
            "link add br-lan type veth peer name eth0 netns {}",
            ns("lan")
        ),
    )?;
    for (n, dev, addr) in [
        ("router", "pppoe-wan", ROUTER_WAN.to_string()),
        ("router", "br-lan", format!("{OLD_PREFIX}::1")),
        ("wan", "eth0", WAN_HOST.to_string()),
        ("lan", "eth0", format!("{OLD_PREFIX}::50")),
    ] {
        ip(n, &format!("addr add {addr}/64 dev {dev} nodad"))?;
        ip(n, &format!("link set {dev} up"))?;
    }
    ip("wan", &format!("-6 route add default via {ROUTER_WAN}"))?;
    ip("lan", &format!("-6 route add default via {OLD_PREFIX}::1"))?;
    run(
        "ip",
        &[
            "netns",
            "exec",
            &ns("router"),
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.forwarding=1",
        ],
    )?;
    let ruleset = lab.dir.join("firewall.nft");
    std::fs::write(&ruleset, firewall()).map_err(|e| format!("{}: {e}", ruleset.display()))?;
    let ruleset = ruleset.display().to_string();
    run(
        "ip",
        &["netns", "exec", &ns("router"), "nft", "-f", &ruleset],
    )?;
    Ok(())
}

/// Start `ntpgate run` in a namespace with this config; wait until it serves.
fn start_daemon(lab: &mut Lab, netns: &str, name: &str, config: &str) -> Result<(), String> {
    let path = lab.dir.join(name);
    std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
    let log = lab.dir.join(format!("{name}.log"));
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let child = in_ns(netns, &exe.display().to_string(), &["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start ntpgate in {netns}: {e}"))?;
    lab.daemons.push(child);
    wait(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("serving NTP on"))
    })
    .ok_or_else(|| format!("ntpgate in {netns} did not start: see {}", log.display()))?;
    Ok(())
}

fn wait(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A query from the WAN host; its report, or `None` without an answer.
fn query_from_wan(address: &str) -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let target = format!("[{address}]:123");
    let out = in_ns(
        "wan",
        &exe.display().to_string(),
        &["query", "--timeout", "0.5", &target],
    )
    .output()
    .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn holes() -> String {
    run(
        "ip",
        &[
            "netns",
            "exec",
            &ns("router"),
            "nft",
            "list",
            "set",
            "inet",
            "fw4",
            "ntpgate_lan6",
        ],
    )
    .unwrap_or_default()
    .lines()
    .filter(|l| l.contains("elements") || l.contains("timeout") && l.contains("expires"))
    .map(str::trim)
    .collect::<Vec<_>>()
    .join("\n")
}

fn say(text: &str) {
    println!("\n==> {text}");
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

const LAN_SERVER: &str = "config server\n\tlist listen '::'\n\toption port '123'\n\toption local_stratum '2'\n\toption ratelimit '0'\n";

const ROUTER: &str = "config server\n\tlist listen '::'\n\toption port '123'\n\toption local_stratum '3'\n\toption serve_wan '1'\n\toption pinhole_timeout '30'\nconfig pinhole 'nas'\n\toption device 'br-lan'\n\toption suffix '::50'\n\toption health_check '1'\n\toption health_interval '5'\n\toption limit_pps '20'\n";

/// The demo. Needs root, `ip` (iproute2) and `nft` (nftables).
pub fn network_demo() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("{PREFIX}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut lab = Lab {
        dir,
        daemons: Vec::new(),
    };
    say("building the network: wan -- router (pppoe-wan | br-lan) -- lan, in namespaces");
    build(&lab)?;
    println!(
        "    WAN host {WAN_HOST}, router {ROUTER_WAN} / {OLD_PREFIX}::1, LAN host {OLD_PREFIX}::50\n    \
         router firewall: fw4's shape, policy drop, with ntpgate's include files"
    );
    start_daemon(&mut lab, "lan", "lan-server", LAN_SERVER)?;
    let lan_host = format!("{OLD_PREFIX}::50");
    say(&format!(
        "the LAN host serves NTP; from the WAN, without ntpgate: {}",
        match query_from_wan(&lan_host) {
            Some(_) => "answered (the firewall is open!)",
            None => "no answer: fw4 drops it",
        }
    ));
    say(
        "starting ntpgate on the router: pinhole 'nas' (suffix ::50 on br-lan, health check, 20 packets/s per source), serve_wan",
    );
    start_daemon(&mut lab, "router", "ntpgate", ROUTER)?;
    let opened = wait(Duration::from_secs(15), || {
        query_from_wan(&lan_host).is_some()
    })
    .ok_or("the pinhole did not open: see the router's log in the demo directory")?;
    println!(
        "    the hole opened {:.1} s after the start (after the first health check)",
        opened.as_secs_f64()
    );
    println!("{}", indent(&holes()));
    say(&format!(
        "a query from the WAN host to {lan_host}, through the router:"
    ));
    print!(
        "{}",
        indent(&query_from_wan(&lan_host).ok_or("the query was not answered")?)
    );
    say(&format!(
        "the router's own server from the WAN (serve_wan): {}",
        if query_from_wan(ROUTER_WAN).is_some() {
            "answered"
        } else {
            "no answer"
        }
    ));

    say(&format!(
        "the ISP re-delegates: the LAN moves from {OLD_PREFIX}::/64 to {NEW_PREFIX}::/64"
    ));
    let new_host = format!("{NEW_PREFIX}::50");
    ip("lan", &format!("addr add {new_host}/64 dev eth0 nodad"))?;
    ip(
        "router",
        &format!("addr add {NEW_PREFIX}::1/64 dev br-lan nodad"),
    )?;
    let changed = Instant::now();
    ip("router", &format!("addr del {OLD_PREFIX}::1/64 dev br-lan"))?;
    wait(Duration::from_secs(5), || {
        let h = holes();
        h.contains(&new_host) && !h.contains(&format!("{lan_host} "))
    })
    .ok_or("the hole did not move")?;
    println!(
        "    the hole moved to {new_host} {} ms after the change",
        changed.elapsed().as_millis()
    );
    println!("{}", indent(&holes()));
    ip(
        "lan",
        &format!("-6 route replace default via {NEW_PREFIX}::1"),
    )?;
    println!(
        "    query to the new address: {}",
        if query_from_wan(&new_host).is_some() {
            "answered"
        } else {
            "no answer"
        }
    );
    println!(
        "    query to the old address: {}",
        if query_from_wan(&lan_host).is_some() {
            "answered (still open!)"
        } else {
            "no answer: closed"
        }
    );

    say("the daemon's status (SIGUSR1, as it logs it):");
    let router = router_pid(&lab.daemons)?;
    // SAFETY: kill has no memory preconditions; `router` is the pid of a
    // child of ours, never 0 (which would signal our own process group).
    unsafe { libc::kill(router, libc::SIGUSR1) };
    std::thread::sleep(Duration::from_millis(300));
    let log = std::fs::read_to_string(lab.dir.join("ntpgate.log")).unwrap_or_default();
    let last = |prefix: &str| {
        log.lines()
            .rev()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_default()
            .to_string()
    };
    let status = [last("notice: counters"), last("notice: pinhole: nas")].join("\n");
    print!("{}", indent(&status));
    say("the router's log:");
    print!(
        "{}",
        indent(
            &log.lines()
                .filter(|l| l.contains("pinhole nas") || l.contains("serving"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    );

    say("stopping: a clean stop closes the holes, then the namespaces go");
    drop(lab);
    Ok(())
}

/// The router's daemon, started last: the pid to signal.
fn router_pid(daemons: &[Child]) -> Result<libc::pid_t, String> {
    daemons
        .last()
        .and_then(|d| libc::pid_t::try_from(d.id()).ok())
        .filter(|&pid| pid > 0)
        .ok_or_else(|| "the router's daemon is not running".to_string())
}

/// Why the network demo cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("it needs root (network namespaces and nftables)".into());
    }
    for (program, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        let found = std::env::var_os("PATH").is_some_and(|p| {
            std::env::split_paths(&p).any(|d| Path::new(&d).join(program).is_file())
        });
        if !found {
            return Some(format!("{program} is not installed (package {package})"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_daemon_is_an_error_never_pid_0() {
        // kill(0, ...) would signal the demo's own process group.
        assert!(router_pid(&[]).is_err());
        let child = Command::new("true").spawn().unwrap();
        let pid = child.id() as libc::pid_t;
        let mut daemons = vec![child];
        assert_eq!(router_pid(&daemons), Ok(pid));
        let _ = daemons[0].wait();
    }
}
