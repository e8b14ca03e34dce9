//! Least privilege on every install. Started as root with `option user`,
//! the daemon becomes that user itself (no procd ujail needed) and keeps
//! CAP_SYS_TIME, CAP_NET_BIND_SERVICE and CAP_NET_ADMIN only, ambient too
//! (nft inherits CAP_NET_ADMIN), with no_new_privs; it does the whole job
//! in the router namespace of the pinhole tests: port 123, the netlink
//! watch, the fw4 sets through nft, answered from the WAN; and it reads
//! its config at every reload as that user, in the mode and owner the
//! package gives the file and libuci keeps when LuCI saves it.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::lan::*;
use common::*;

/// The unprivileged user: Debian's `nobody`.
const UID: u32 = 65534;
const SYS_TIME: u64 = 1 << 25;
const NET_BIND_SERVICE: u64 = 1 << 10;
const NET_ADMIN: u64 = 1 << 12;

fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn caps(pid: u32, set: &str) -> u64 {
    u64::from_str_radix(&status_field(pid, set), 16).unwrap()
}

const CONFIG: &str = "config server\n\tlist listen '::'\n\toption port '123'\n\toption local_stratum '3'\n\toption serve_wan '1'\n\toption pinhole_timeout '6'\n\toption user 'nobody'\nconfig pinhole 'nas'\n\toption device 'br-lan'\n\toption suffix '::50'\n";

/// libuci's commit (openwrt/uci file.c `uci_file_commit`), as rpcd runs it
/// for LuCI's Save: the new text goes into a `.NAME.uci-XXXXXX` file that
/// mkstemp creates (mode 0600, owned by the writer: root), which then gets
/// the old file's mode and is renamed over it. The owner is not carried
/// over.
fn libuci_commit(path: &Path, text: &str) {
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    let name = path.file_name().unwrap().to_string_lossy();
    let temp = path.with_file_name(format!(".{name}.uci-Xa1b2c"));
    std::fs::write(&temp, text).unwrap();
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// The mode and owner the package gives `/etc/config/ntpgate`: read from
/// the .ipk that cross/package made (CI makes it before the tests).
fn packaged_config_mode() -> (u32, u32, u32) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ipk = root.join(format!(
        "dist/ntpgate_{}-r1_mips_24kc.ipk",
        env!("CARGO_PKG_VERSION")
    ));
    if !ipk.exists() {
        run_ok(Command::new(root.join("cross/package")).arg("mips_24kc"));
    }
    let dir = scratch_dir();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&ipk)
            .arg("-C")
            .arg(&dir),
    );
    let listing = run_ok(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("-tzvf")
            .arg(dir.join("data.tar.gz"))
            .arg("./etc/config/ntpgate"),
    );
    // `-rw-r--r-- 0/0 1750 2026-11-29 17:06 ./etc/config/ntpgate`
    let fields: Vec<&str> = listing.split_whitespace().collect();
    let mode = fields[0][1..]
        .bytes()
        .fold(0, |m, b| (m << 1) | u32::from(b != b'-'));
    let (uid, gid) = fields[1].split_once('/').unwrap();
    (mode, uid.parse().unwrap(), gid.parse().unwrap())
}

/// `config` in a file of its own with the packaged mode and owner.
fn as_packaged(config: &str) -> PathBuf {
    let (mode, uid, gid) = packaged_config_mode();
    let path = scratch_dir().join("ntpgate");
    std::fs::write(&path, config).unwrap();
    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn started_as_root_it_becomes_the_user_and_does_the_whole_job() {
    require_root("starting the daemon as root");
    let net = Network::build();
    let _lan_ntp = Daemon::start_with(
        net.lan.command(BIN),
        "config server\n\tlist listen '::'\n\toption port '123'\n\toption local_stratum '2'\n",
        1,
    );
    let d = Daemon::start_with(net.router.command(BIN), CONFIG, 1);
    let pid = d.pid();
    assert_eq!(
        status_field(pid, "Uid"),
        format!("{UID}\t{UID}\t{UID}\t{UID}")
    );
    assert_eq!(
        status_field(pid, "Gid"),
        format!("{UID}\t{UID}\t{UID}\t{UID}"),
        "nobody's group"
    );
    assert_eq!(status_field(pid, "Groups"), "", "no supplementary groups");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    let three = SYS_TIME | NET_BIND_SERVICE | NET_ADMIN;
    for set in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(caps(pid, set), three, "{set}");
    }
    assert!(
        d.log()
            .contains("running as user nobody (uid 65534) with CAP_SYS_TIME, CAP_NET_BIND_SERVICE, CAP_NET_ADMIN"),
        "{}",
        d.log()
    );

    within(Duration::from_secs(10), || net.answers(LAN_HOST, 123))
        .unwrap_or_else(|| panic!("the pinhole did not open: {}", d.log()));
    assert!(
        net.answers(ROUTER_WAN, 123),
        "the router's server on port 123"
    );
    assert!(net.elements("ntpgate_lan6").contains(LAN_HOST));

    // A reload, as the user: the router's server moves to stratum 4.
    std::fs::write(&d.config_path, CONFIG.replace("'3'", "'4'")).unwrap();
    d.signal("HUP");
    d.wait_for_log(
        |l| l.contains("reload: configuration applied"),
        "the reload",
    );
    within(Duration::from_secs(5), || {
        let out = net
            .wan
            .command(BIN)
            .args(["query", "--timeout", "1", &format!("[{ROUTER_WAN}]:123")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("stratum    4\n")
    })
    .expect("stratum 4 served after the reload");

    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(
        net.elements("ntpgate_lan6").is_empty(),
        "a clean stop closes: {log}"
    );
    assert!(!log.contains("warning: pinholes"), "{log}");
}

/// The config as the package installs it, read by the daemon's user at a
/// reload after LuCI saved it (libuci: a new file, root:root, the old
/// mode). A file only root can read would be refused at every reload.
#[test]
fn the_user_reads_the_packaged_config_after_libuci_rewrote_it() {
    require_root("starting the daemon as root");
    let port = free_port();
    let config = format!(
        "config server 'main'\n\tlist listen '127.0.0.1'\n\toption port '{port}'\n\toption local_stratum '3'\n\toption user 'nobody'\n"
    );
    let path = as_packaged(&config);
    let d = Daemon::start_with_path(Command::new(BIN), &path, 1);
    assert!(d.log().contains("running as user nobody"), "{}", d.log());

    libuci_commit(&path, &config.replace("'3'", "'4'"));
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "libuci leaves root:root");
    d.signal("HUP");
    d.wait_for_log(
        |l| l.contains("reload: configuration applied") || l.contains("reload refused"),
        "the reload",
    );
    assert!(
        d.log().contains("reload: configuration applied"),
        "{}",
        d.log()
    );
}

/// In a container the bounding set may lack CAP_SYS_TIME: the daemon
/// keeps what it needs and has, says what it lacks, and starts; observe
/// mode needs no CAP_SYS_TIME.
#[test]
fn only_capabilities_the_bounding_set_has_are_kept() {
    require_root("starting the daemon as root");
    let port = free_port();
    let mut cmd = Command::new(require("setpriv", "util-linux"));
    cmd.args(["--bounding-set=-sys_time", "--", BIN]);
    let d = Daemon::start_with(
        cmd,
        &format!(
            "config server\n\tlist listen '127.0.0.1'\n\toption port '{port}'\n\toption user 'nobody'\n{SILENT_UPSTREAM}"
        ),
        1,
    );
    assert_eq!(caps(d.pid(), "CapEff"), NET_BIND_SERVICE | NET_ADMIN);
    assert!(
        d.log()
            .contains("info: CAP_SYS_TIME not in the bounding set: not needed with this config"),
        "{}",
        d.log()
    );
    drop(d);

    // With clock control it is needed, and the log says what is lost.
    let mut cmd = Command::new(require("setpriv", "util-linux"));
    cmd.args(["--bounding-set=-sys_time", "--", BIN]);
    let d = Daemon::start_with(
        cmd,
        &format!(
            "config server\n\tlist listen '127.0.0.1'\n\toption port '{port}'\n\toption user 'nobody'\n\toption local_stratum '3'\n"
        ),
        1,
    );
    assert!(
        d.log()
            .contains("warning: CAP_SYS_TIME not in the bounding set: cannot steer the clock"),
        "{}",
        d.log()
    );
}

/// Started as another user, it keeps what it was given, and says which
/// part of its job it cannot do.
#[test]
fn as_another_user_it_keeps_what_it_has() {
    let net = Network::build();
    let setpriv = |caps: &str| {
        let mut c = net.router.command(require("setpriv", "util-linux"));
        c.args([
            &format!("--reuid={UID}"),
            &format!("--regid={UID}"),
            "--clear-groups",
            &format!("--inh-caps=-all,{caps}"),
            &format!("--ambient-caps=-all,{caps}"),
            "--no-new-privs",
            "--",
            BIN,
        ]);
        c
    };
    let config = CONFIG.replace("\toption user 'nobody'\n", "");
    // Without CAP_NET_BIND_SERVICE: port 123 cannot be bound.
    let out = setpriv("+sys_time,+net_admin")
        .args(["run", "--config"])
        .arg({
            let path = scratch_dir().join("no-bind.conf");
            std::fs::write(&path, &config).unwrap();
            path
        })
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("CAP_NET_BIND_SERVICE not held: cannot bind port 123"),
        "{log}"
    );
    assert!(log.contains("Permission denied"), "{log}");

    // Without CAP_NET_ADMIN: nft cannot read or write the sets, and the
    // daemon says so.
    let d = Daemon::start_with(setpriv("+sys_time,+net_bind_service"), &config, 1);
    assert_eq!(caps(d.pid(), "CapEff"), SYS_TIME | NET_BIND_SERVICE);
    d.wait_for_log(
        |l| l.contains("warning: pinholes:"),
        "a warning that nft failed",
    );
    assert!(
        d.log()
            .contains("CAP_NET_ADMIN not held: cannot keep the firewall pinholes"),
        "{}",
        d.log()
    );
    assert!(net.elements("ntpgate_lan6").is_empty());
}
