//! The OpenWrt package's scripts, run by busybox's ash as on the router,
//! with procd's and UCI's shell helpers replaced by recorders: what the
//! init script declares to procd for a given config, how it hands port 123
//! and the clock over from sysntpd and back, and what the uci-defaults
//! script does on install. Plus the files procd, ubusd and fw4 read, and
//! shellcheck over the scripts.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const FILES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openwrt-package/ntpgate/files");

/// Stand-ins for what /etc/rc.common, /lib/functions.sh and
/// /lib/functions/procd.sh provide: each call is written to $LOG.
const RECORDERS: &str = r#"
rec() { echo "$*" >>"$LOG"; }
procd_open_instance() { rec "procd_open_instance $*"; }
procd_close_instance() { rec "procd_close_instance"; }
procd_set_param() { rec "procd_set_param $*"; }
procd_add_jail() { rec "procd_add_jail $*"; }
procd_add_reload_trigger() { rec "procd_add_reload_trigger $*"; }
procd_add_interface_trigger() { rec "procd_add_interface_trigger $*"; }
procd_send_signal() { rec "procd_send_signal $*"; }
config_load() { rec "config_load $*"; }
config_foreach() { rec "config_foreach $*"; "$1" main; }
config_get_bool() { eval "$1=\${SERVER_ENABLED:-$4}"; }
enabled() { [ "$NTPGATE_ENABLED" = 1 ]; }
chown() { rec "chown $*"; }
"#;

/// An image root with a sysntpd whose init script records its calls and
/// keeps its enabled state, as rc.common's enable/disable/enabled do.
struct Root {
    dir: PathBuf,
}

impl Root {
    fn new(sysntpd_enabled: bool) -> Root {
        let dir = scratch_dir().join(unique("root"));
        std::fs::create_dir_all(dir.join("etc/init.d")).unwrap();
        let sysntpd = dir.join("etc/init.d/sysntpd");
        std::fs::write(
            &sysntpd,
            "#!/bin/sh\nstate=\"$(dirname \"$0\")/../sysntpd.enabled\"\necho \"sysntpd $1\" >>\"$LOG\"\ncase \"$1\" in\n\tenabled) [ -f \"$state\" ] ;;\n\tenable) touch \"$state\" ;;\n\tdisable) rm -f \"$state\" ;;\nesac\n",
        )
        .unwrap();
        run_ok(Command::new("chmod").arg("755").arg(&sysntpd));
        if sysntpd_enabled {
            std::fs::write(dir.join("etc/sysntpd.enabled"), "").unwrap();
        }
        Root { dir }
    }

    fn sysntpd_enabled(&self) -> bool {
        self.dir.join("etc/sysntpd.enabled").exists()
    }

    fn handed_over(&self) -> bool {
        self.dir.join("etc/ntpgate.sysntpd-enabled").exists()
    }

    /// Source the init script and run `functions`; the recorded calls.
    fn init(&self, functions: &str, server_enabled: bool, ntpgate_enabled: bool) -> Vec<String> {
        let log = self.dir.join(unique("log"));
        let script = format!("{RECORDERS}\n. {FILES}/ntpgate.init\n{functions}\n");
        let out = Command::new("busybox")
            .args(["sh", "-c", &script])
            .env("IPKG_INSTROOT", &self.dir)
            .env("LOG", &log)
            .env("SERVER_ENABLED", if server_enabled { "1" } else { "0" })
            .env("NTPGATE_ENABLED", if ntpgate_enabled { "1" } else { "0" })
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{functions}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[test]
fn init_script_declares_the_instance_and_takes_over_from_sysntpd() {
    require("busybox", "busybox-static");
    let root = Root::new(true);
    let calls = root.init("start_service", true, true);
    let command = calls
        .iter()
        .find(|c| c.starts_with("procd_set_param command"))
        .expect("a command");
    // Logs to syslog with each line's own priority (procd would record
    // stderr at LOG_ERR).
    assert_eq!(
        command,
        "procd_set_param command /usr/sbin/ntpgate run --config /etc/config/ntpgate --syslog"
    );
    for expected in [
        "sysntpd disable",
        "sysntpd stop",
        "procd_open_instance ",
        "procd_set_param respawn",
        "procd_set_param stderr 1",
        "procd_set_param file /etc/config/ntpgate",
        "procd_close_instance",
    ] {
        assert!(
            calls.iter().any(|c| c == expected),
            "missing {expected:?} in {calls:#?}"
        );
    }
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("procd_open_instance"))
            .count(),
        1,
        "one instance"
    );
    // The daemon drops privileges itself (option user): no ujail, whose
    // capabilities file would stop everything in a container that lacks
    // one of them.
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("jail") || c.contains("capabilities") || c.contains("user")),
        "{calls:#?}"
    );
    assert!(
        calls.iter().any(|c| c
            == &format!(
                "chown -h ntpgate:ntpgate {}/var/lib/ntpgate",
                root.dir.display()
            )),
        "{calls:#?}"
    );
    assert!(root.dir.join("var/lib/ntpgate").is_dir());
    assert!(!root.sysntpd_enabled() && root.handed_over());

    // Started again (a restart): sysntpd stays off, and the note that it
    // was enabled is kept.
    root.init("start_service", true, true);
    assert!(!root.sysntpd_enabled() && root.handed_over());

    // Triggers and reload.
    let calls = root.init("service_triggers; reload_service", true, true);
    assert_eq!(
        calls,
        [
            "procd_add_reload_trigger ntpgate",
            "procd_send_signal ntpgate * HUP"
        ]
    );

    // Stopped while enabled (a restart): sysntpd stays off.
    root.init("stop_service", true, true);
    assert!(!root.sysntpd_enabled());
    // Disabled, then stopped: sysntpd is back, enabled and started.
    let calls = root.init("stop_service", true, false);
    assert_eq!(calls, ["sysntpd enable", "sysntpd start"]);
    assert!(root.sysntpd_enabled() && !root.handed_over());
}

#[test]
fn server_off_in_the_config_gives_sysntpd_back_and_starts_nothing() {
    require("busybox", "busybox-static");
    let root = Root::new(true);
    root.init("start_service", true, true);
    assert!(root.handed_over());
    let calls = root.init("start_service", false, true);
    assert!(
        !calls.iter().any(|c| c.starts_with("procd_open_instance")),
        "{calls:#?}"
    );
    assert!(root.sysntpd_enabled() && !root.handed_over());
}

#[test]
fn a_disabled_sysntpd_stays_disabled() {
    require("busybox", "busybox-static");
    let root = Root::new(false);
    let calls = root.init("start_service", true, true);
    assert!(calls.iter().any(|c| c == "procd_open_instance "));
    // sysntpd was disabled: stopped, not noted, so not enabled later.
    assert!(calls.iter().any(|c| c == "sysntpd stop"));
    assert!(!calls.iter().any(|c| c == "sysntpd disable"));
    assert!(!root.handed_over());
    root.init("stop_service", true, false);
    assert!(!root.sysntpd_enabled(), "a disabled sysntpd stays disabled");
}

/// /var is /tmp on OpenWrt: anyone may have put a symlink where the state
/// directory goes, aiming chown at a file of root's.
#[test]
fn the_state_directory_never_follows_a_planted_symlink() {
    require("busybox", "busybox-static");
    let root = Root::new(false);
    let victim = root.dir.join("etc/shadow");
    std::fs::write(&victim, "root:secret\n").unwrap();
    std::fs::create_dir_all(root.dir.join("var/lib")).unwrap();
    std::os::unix::fs::symlink(&victim, root.dir.join("var/lib/ntpgate")).unwrap();
    let calls = root.init("start_service", true, true);
    let state = root.dir.join("var/lib/ntpgate");
    let meta = std::fs::symlink_metadata(&state).unwrap();
    assert!(meta.is_dir(), "a directory of its own, not the symlink");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "root:secret\n",
        "the target is untouched"
    );
    assert!(
        calls
            .iter()
            .any(|c| c == &format!("chown -h ntpgate:ntpgate {}", state.display())),
        "{calls:#?}"
    );
}

#[test]
fn uci_defaults_takes_over_on_install() {
    require("busybox", "busybox-static");
    for was_enabled in [true, false] {
        let root = Root::new(was_enabled);
        let log = root.dir.join("log");
        let status = Command::new("busybox")
            .args(["sh", &format!("{FILES}/ntpgate.uci-defaults")])
            .env("IPKG_INSTROOT", &root.dir)
            .env("LOG", &log)
            .status()
            .unwrap();
        assert!(status.success());
        let calls = std::fs::read_to_string(&log).unwrap();
        assert!(calls.contains("sysntpd stop"), "{calls}");
        assert!(!root.sysntpd_enabled());
        assert_eq!(root.handed_over(), was_enabled);
    }
}

#[test]
fn package_files_are_valid() {
    // ubusd's ACL: the daemon's user may publish its object and ask
    // netifd for the devices, nothing more.
    let text = std::fs::read_to_string(Path::new(FILES).join("ntpgate.acl.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).expect("the ACL is JSON");
    assert_eq!(v["user"], "ntpgate");
    assert_eq!(v["publish"], serde_json::json!(["ntpgate"]));
    assert_eq!(
        v["access"],
        serde_json::json!({"network.interface": {"methods": ["dump"]}})
    );
    // The default config is valid for `ntpgate check` (with the network
    // config of a default OpenWrt beside it).
    let dir = scratch_dir().join(unique("etc-config"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(Path::new(FILES).join("ntpgate.config"), dir.join("ntpgate")).unwrap();
    std::fs::write(
        dir.join("network"),
        "config interface 'lan'\n\toption device 'br-lan'\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(dir.join("ntpgate"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("OK (0 warning(s))"), "{text}");
}

#[test]
fn shellcheck_passes_the_scripts() {
    let shellcheck = require("shellcheck", "shellcheck");
    // Busybox's ash is the router's shell. shellcheck 0.9 (Debian 12) has
    // no busybox dialect; dash, ash's sibling (`local`, no arrays, no
    // `[[`), is the nearest it knows.
    for script in ["ntpgate.init", "ntpgate.uci-defaults", "ntpgate.postinst"] {
        let out = Command::new(&shellcheck)
            .args(["--shell=dash", "--severity=style"])
            .arg(Path::new(FILES).join(script))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// ubusd reads its ACL files only at its start and on SIGHUP: the
/// package's post-install tells it, on the router, not while an image is
/// built (IPKG_INSTROOT set).
#[test]
fn the_post_install_makes_ubusd_read_the_new_acl() {
    require("busybox", "busybox-static");
    let script = Path::new(FILES).join("ntpgate.postinst");
    for (instroot, expected) in [("", "-HUP ubusd\n"), ("/tmp/image", "")] {
        let log = scratch_dir().join("killall.log");
        // busybox's sh runs its own killall applet before any on PATH: a
        // function stands in for it.
        let status = Command::new("busybox")
            .args(["sh", "-c"])
            .arg(format!(
                "killall() {{ echo \"$*\" >>{}; }}; . {}",
                log.display(),
                script.display()
            ))
            .env("IPKG_INSTROOT", instroot)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read_to_string(&log).unwrap_or_default(),
            expected,
            "IPKG_INSTROOT={instroot:?}"
        );
    }
    // The SDK Makefile says the same (make's $$ is the script's $).
    let makefile = std::fs::read_to_string(Path::new(FILES).join("../Makefile")).unwrap();
    let define = makefile
        .split("define Package/ntpgate/postinst\n")
        .nth(1)
        .and_then(|rest| rest.split("endef").next())
        .expect("Package/ntpgate/postinst in the Makefile");
    assert_eq!(
        define.replace("$$", "$"),
        std::fs::read_to_string(&script).unwrap()
    );
}
