//! The router packages, proven under emulation: for each architecture CI
//! builds (mips big-endian and aarch64; more with NTPGATE_CROSS_ARCHES),
//! the .ipk that cross/package makes is unpacked and checked member by
//! member, and the binary from it runs under qemu-user: `--version`,
//! `check` on the packaged default config, and `run` answering real NTP
//! queries from this host (our own client, every field checked, and
//! chronyd -Q). The .apk of the same build (and the LuCI app's) is read
//! with cross/mkapk (whose reading is proven against apk-tools' own in its
//! tests) and checked against the .ipk: the same files, modes, owners and
//! contents, the same metadata, the same scripts in OpenWrt's apk shape,
//! and the files OpenWrt's build adds for apk.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn arches() -> Vec<String> {
    std::env::var("NTPGATE_CROSS_ARCHES")
        .unwrap_or_else(|_| "mips_24kc aarch64_cortex-a53".into())
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn qemu_for(arch: &str) -> String {
    let program = match arch {
        a if a.starts_with("mipsel") => "qemu-mipsel",
        a if a.starts_with("mips") => "qemu-mips",
        a if a.starts_with("arm") => "qemu-arm",
        a if a.starts_with("aarch64") => "qemu-aarch64",
        "x86_64" => "qemu-x86_64",
        other => panic!("no qemu for {other}"),
    };
    require(program, "qemu-user").display().to_string()
}

/// The packaged binary run under qemu-user with `args`.
fn run_under_qemu(qemu: &str, binary: &Path, args: &[&str]) -> std::process::Output {
    Command::new(qemu).arg(binary).args(args).output().unwrap()
}

fn version() -> String {
    format!("{}-r1", env!("CARGO_PKG_VERSION"))
}

/// The .ipk for `arch` (or `luci`), made with its .apk by cross/package
/// if either is not there yet; one test at a time, so that no test reads
/// a package another is still writing.
fn package(arch: &str) -> PathBuf {
    static PACKAGING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = PACKAGING.lock().unwrap_or_else(|e| e.into_inner());
    let ipk = Path::new(ROOT).join(match arch {
        "luci" => format!("dist/luci-app-ntpgate_{}_all.ipk", version()),
        _ => format!("dist/ntpgate_{}_{arch}.ipk", version()),
    });
    if !ipk.exists() || !apk_of(arch).exists() {
        run_ok(Command::new(Path::new(ROOT).join("cross/package")).arg(arch));
    }
    ipk
}

/// The .apk cross/package makes beside the .ipk: named as OpenWrt names
/// it, in dist/ARCH/ (in dist/ for the noarch LuCI app).
fn apk_of(arch: &str) -> PathBuf {
    Path::new(ROOT).join(match arch {
        "luci" => format!("dist/luci-app-ntpgate-{}.apk", version()),
        _ => format!("dist/{arch}/ntpgate-{}.apk", version()),
    })
}

/// Unpack the package: the directory with `data/` and `control/`.
fn unpack(ipk: &Path) -> PathBuf {
    let dir = scratch_dir();
    let outer = run_ok(Command::new("tar").arg("-tzf").arg(ipk));
    assert_eq!(
        outer.lines().collect::<Vec<_>>(),
        ["./debian-binary", "./data.tar.gz", "./control.tar.gz"],
        "outer members and their order"
    );
    run_ok(Command::new("tar").arg("-xzf").arg(ipk).arg("-C").arg(&dir));
    assert_eq!(
        std::fs::read_to_string(dir.join("debian-binary")).unwrap(),
        "2.0\n"
    );
    for part in ["data", "control"] {
        std::fs::create_dir_all(dir.join(part)).unwrap();
        run_ok(
            Command::new("tar")
                .arg("-xzf")
                .arg(dir.join(format!("{part}.tar.gz")))
                .arg("-C")
                .arg(dir.join(part)),
        );
    }
    dir
}

fn check_members(dir: &Path, arch: &str) {
    let listing = run_ok(
        Command::new("tar")
            .arg("-tzvf")
            .arg(dir.join("data.tar.gz")),
    );
    let mode_of = |path: &str| -> String {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" ./{path}")))
            .unwrap_or_else(|| panic!("{path} missing from the package:\n{listing}"))
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (path, mode) in [
        ("usr/sbin/ntpgate", "-rwxr-xr-x 0/0"),
        ("etc/init.d/ntpgate", "-rwxr-xr-x 0/0"),
        // Readable by the daemon's user, which reads it at every reload.
        ("etc/config/ntpgate", "-rw-r--r-- 0/0"),
        ("etc/uci-defaults/90-ntpgate", "-rwxr-xr-x 0/0"),
        ("usr/share/acl.d/ntpgate.json", "-rw-r--r-- 0/0"),
        (
            "usr/share/nftables.d/table-pre/30-ntpgate.nft",
            "-rw-r--r-- 0/0",
        ),
        (
            "usr/share/nftables.d/chain-pre/forward/30-ntpgate.nft",
            "-rw-r--r-- 0/0",
        ),
        (
            "usr/share/nftables.d/chain-pre/forward_wan/30-ntpgate.nft",
            "-rw-r--r-- 0/0",
        ),
        (
            "usr/share/nftables.d/chain-pre/input_wan/30-ntpgate.nft",
            "-rw-r--r-- 0/0",
        ),
    ] {
        assert_eq!(mode_of(path), mode, "{path}");
    }
    // The packaged files are the repository's.
    let files = Path::new(ROOT).join("openwrt-package/ntpgate/files");
    for (packaged, source) in [
        ("etc/init.d/ntpgate", "ntpgate.init"),
        ("etc/config/ntpgate", "ntpgate.config"),
        (
            "usr/share/nftables.d/chain-pre/forward/30-ntpgate.nft",
            "nftables.d/chain-pre/forward/30-ntpgate.nft",
        ),
    ] {
        assert_eq!(
            std::fs::read(dir.join("data").join(packaged)).unwrap(),
            std::fs::read(files.join(source)).unwrap(),
            "{packaged}"
        );
    }
    let control = std::fs::read_to_string(dir.join("control/control")).unwrap();
    let field = |name: &str| {
        control
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in:\n{control}"))
            .to_string()
    };
    assert_eq!(field("Package"), "ntpgate");
    assert_eq!(field("Version"), version());
    assert_eq!(field("Architecture"), arch);
    assert_eq!(field("Require-User"), "ntpgate=124:ntpgate=124");
    assert!(field("Depends").contains("nftables-json"));
    // The fields and their order as include/package-pack.mk writes them.
    let names: Vec<&str> = control
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_once(':').map(|(name, _)| name))
        .collect();
    assert_eq!(
        names,
        [
            "Package",
            "Version",
            "Depends",
            "Source",
            "SourceName",
            "License",
            "LicenseFiles",
            "Section",
            "Require-User",
            "SourceDateEpoch",
            "URL",
            "Maintainer",
            "Architecture",
            "Installed-Size",
            "Description",
        ]
    );
    assert!(field("SourceDateEpoch").parse::<u64>().is_ok());
    // As ipkg-build writes it: the bytes of the uncompressed data tar.
    let data_tar = Command::new("gzip")
        .args(["-dc"])
        .arg(dir.join("data.tar.gz"))
        .output()
        .unwrap();
    assert!(data_tar.status.success());
    assert_eq!(field("Installed-Size"), data_tar.stdout.len().to_string());
    assert_eq!(
        std::fs::read_to_string(dir.join("control/conffiles")).unwrap(),
        "/etc/config/ntpgate\n"
    );
    assert_eq!(field("License"), "GPL-2.0-or-later");
    assert_eq!(field("LicenseFiles"), "LICENSE");
    assert!(
        field("Maintainer").contains(" <") && field("Maintainer").ends_with('>'),
        "Name <email>"
    );
    assert!(
        std::fs::read_to_string(dir.join("control/postinst"))
            .unwrap()
            .contains("default_postinst $0 $@")
    );
    // Our own post-install, run by default_postinst, tells ubusd to read
    // the ACL the package brought.
    assert_eq!(
        std::fs::read_to_string(dir.join("control/postinst-pkg")).unwrap(),
        std::fs::read_to_string(files.join("ntpgate.postinst")).unwrap()
    );
    assert!(
        std::fs::read_to_string(dir.join("control/prerm"))
            .unwrap()
            .contains("default_prerm $0 $@")
    );
}

/// cross/mkapk, built as cross/package builds it (a no-op when it is).
fn mkapk() -> PathBuf {
    let dir = Path::new(ROOT).join("cross/mkapk");
    run_ok(
        Command::new("cargo")
            .args([
                "build",
                "--release",
                "--locked",
                "--quiet",
                "--manifest-path",
            ])
            .arg(dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(dir.join("target")),
    );
    dir.join("target/release/mkapk")
}

/// An .ipk's control fields; a continued field (Description) joined with
/// newlines.
fn control_fields(control: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut last = String::new();
    for line in control.lines() {
        match line.strip_prefix(' ') {
            Some(more) => {
                let value: &mut String = fields.get_mut(&last).unwrap();
                value.push('\n');
                value.push_str(more);
            }
            None => {
                let (key, value) = line.split_once(": ").unwrap();
                last = key.to_string();
                fields.insert(last.clone(), value.to_string());
            }
        }
    }
    fields
}

/// A path of a package: directory or file, mode, owner, and a file's size.
#[derive(PartialEq)]
struct Entry {
    dir: bool,
    mode: u32,
    owner: String,
    size: u64,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let kind = if self.dir { 'd' } else { '-' };
        write!(f, "{kind} {:04o} {} {}", self.mode, self.owner, self.size)
    }
}

/// The .ipk's data members, by path relative to / ("" for / itself).
fn ipk_entries(data_tgz: &Path) -> BTreeMap<String, Entry> {
    let listing = run_ok(Command::new("tar").arg("-tzvf").arg(data_tgz));
    listing
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (perms, owner, size, path) = (f[0], f[1], f[2], f[5]);
            let mode = perms[1..]
                .chars()
                .fold(0, |m, c| m << 1 | u32::from(c != '-'));
            let owner = match owner {
                "0/0" => "root:root".to_string(),
                other => other.to_string(),
            };
            let path = path.trim_start_matches("./").trim_end_matches('/');
            let dir = perms.starts_with('d');
            let size = if dir { 0 } else { size.parse().unwrap() };
            (
                path.to_string(),
                Entry {
                    dir,
                    mode,
                    owner,
                    size,
                },
            )
        })
        .collect()
}

/// The .apk's paths from its metadata, as the .ipk's are listed.
fn apk_entries(meta: &Value) -> BTreeMap<String, Entry> {
    let acl = |v: &Value| {
        (
            v["acl"]["mode"].as_u64().unwrap() as u32,
            format!(
                "{}:{}",
                v["acl"]["user"].as_str().unwrap(),
                v["acl"]["group"].as_str().unwrap()
            ),
        )
    };
    let mut entries = BTreeMap::new();
    for dir in meta["paths"].as_array().unwrap() {
        let name = dir["name"].as_str().unwrap_or("").to_string();
        let (mode, owner) = acl(dir);
        for file in dir["files"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let (mode, owner) = acl(file);
            let path = format!("{name}/{}", file["name"].as_str().unwrap());
            let size = file["size"].as_u64().unwrap();
            let path = path.trim_start_matches('/').to_string();
            entries.insert(
                path,
                Entry {
                    dir: false,
                    mode,
                    owner,
                    size,
                },
            );
        }
        entries.insert(
            name,
            Entry {
                dir: true,
                mode,
                owner,
                size: 0,
            },
        );
    }
    entries
}

fn sha256_hex(file: &Path) -> String {
    run_ok(Command::new("sha256sum").arg(file))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The .apk of the same build against the unpacked .ipk (`dir`): the same
/// payload (files, modes, owners, contents), the metadata OpenWrt's
/// package-pack.mk gives, its scripts around the package's own, and the
/// files it adds under /lib/apk/packages.
fn check_apk(dir: &Path, apk: &Path, apk_arch: &str) {
    let mkapk = mkapk();
    let meta: Value = serde_json::from_str(&run_ok(
        Command::new(&mkapk)
            .args(["dump", "--format", "json"])
            .arg(apk),
    ))
    .unwrap_or_else(|e| panic!("{}: the JSON dump does not parse: {e}", apk.display()));
    let extracted = scratch_dir();
    run_ok(Command::new(&mkapk).arg("extract").arg(apk).arg(&extracted));
    let control = control_fields(&std::fs::read_to_string(dir.join("control/control")).unwrap());
    check_apk_info(&control, &meta["info"], apk_arch);
    check_apk_payload(dir, &control, &meta, &extracted);
    check_apk_scripts(dir, &control["Package"], &meta["scripts"]);
}

/// The metadata: the .ipk's control fields, in apk's form.
fn check_apk_info(control: &BTreeMap<String, String>, info: &Value, apk_arch: &str) {
    let name = control["Package"].as_str();
    let text = |key: &str| {
        info[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key}: {info}"))
    };
    assert_eq!(text("name"), name);
    assert_eq!(text("version"), control["Version"]);
    assert_eq!(text("arch"), apk_arch);
    assert_eq!(text("license"), control["License"]);
    assert_eq!(text("origin"), control["Source"]);
    assert_eq!(
        text("description"),
        control["Description"]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(!text("url").is_empty() && !text("maintainer").is_empty());
    assert_eq!(text("hashes").len(), 40, "the unique id");
    let list = |key: &str| -> Vec<String> {
        info[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key}: {info}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let mut depends: Vec<String> = control["Depends"].split(", ").map(String::from).collect();
    depends.sort();
    assert_eq!(list("depends"), depends, "depends");
    assert_eq!(list("provides"), [format!("{name}-any")]);
}

/// The payload: the .ipk's, plus what OpenWrt's build adds for apk.
fn check_apk_payload(
    dir: &Path,
    control: &BTreeMap<String, String>,
    meta: &Value,
    extracted: &Path,
) {
    let name = control["Package"].as_str();
    let ipk = ipk_entries(&dir.join("data.tar.gz"));
    let mut apk_only = apk_entries(meta);
    let mut payload = BTreeMap::new();
    for path in ipk.keys() {
        payload.insert(
            path.clone(),
            apk_only
                .remove(path)
                .unwrap_or_else(|| panic!("{path} is in the .ipk, not in the .apk")),
        );
    }
    assert_eq!(payload, ipk, "the payload's paths, modes, owners and sizes");
    for (path, entry) in &ipk {
        if entry.dir {
            continue;
        }
        let from_apk = extracted.join(path);
        assert_eq!(
            std::fs::read(&from_apk).unwrap(),
            std::fs::read(dir.join("data").join(path)).unwrap(),
            "{path}: the same contents"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&from_apk).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, entry.mode, "{path}: extracted with its mode");
    }
    let packages = "lib/apk/packages";
    let mut added = vec![format!("{packages}/{name}.list")];
    if control.contains_key("Require-User") {
        added.push(format!("{packages}/{name}.rusers"));
    }
    let conffiles = std::fs::read_to_string(dir.join("control/conffiles")).ok();
    if conffiles.is_some() {
        added.push(format!("{packages}/{name}.conffiles"));
        added.push(format!("{packages}/{name}.conffiles_static"));
    }
    added.sort();
    let entry = |dir, mode| Entry {
        dir,
        mode,
        owner: "root:root".into(),
        size: 0,
    };
    // Sizes are checked below, with the contents.
    for entry in apk_only.values_mut() {
        entry.size = 0;
    }
    let mut expected: BTreeMap<String, Entry> = added
        .iter()
        .map(|p| (p.clone(), entry(false, 0o644)))
        .collect();
    for d in ["lib", "lib/apk", packages] {
        if !ipk.contains_key(d) {
            expected.insert(d.to_string(), entry(true, 0o755));
        }
    }
    assert_eq!(apk_only, expected, "the files OpenWrt adds for apk");

    let read = |path: &str| std::fs::read_to_string(extracted.join(path)).unwrap();
    // package-pack.mk: `find -type f,l | sort` before the conffile lists.
    let mut listed: Vec<String> = ipk
        .iter()
        .filter(|(_, e)| !e.dir)
        .map(|(p, _)| format!("/{p}"))
        .collect();
    if control.contains_key("Require-User") {
        listed.push(format!("/{packages}/{name}.rusers"));
        assert_eq!(
            read(&format!("{packages}/{name}.rusers")),
            format!("{}\n", control["Require-User"])
        );
    }
    listed.sort();
    assert_eq!(
        read(&format!("{packages}/{name}.list")),
        listed.join("\n") + "\n"
    );
    if let Some(conffiles) = conffiles {
        assert_eq!(read(&format!("{packages}/{name}.conffiles")), conffiles);
        let statics: String = conffiles
            .lines()
            .map(|c| format!("{c} {}\n", sha256_hex(&dir.join("data").join(&c[1..]))))
            .collect();
        assert_eq!(
            read(&format!("{packages}/{name}.conffiles_static")),
            statics
        );
    }
}

/// The scripts: the .ipk's, with OpenWrt's apk calls in place of
/// default_postinst/default_prerm, the package's own lines kept.
fn check_apk_scripts(dir: &Path, name: &str, scripts: &Value) {
    let ipk_script = |s: &str| std::fs::read_to_string(dir.join("control").join(s)).unwrap();
    let script = |key: &str| {
        scripts[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key}: {scripts}"))
    };
    let exports = format!("export root=\"${{IPKG_INSTROOT}}\"\nexport pkgname=\"{name}\"\n");
    // The package's own postinst: the .ipk's postinst-pkg (which
    // default_postinst runs), inlined after default_postinst in the .apk
    // without its shebang.
    let own: String = std::fs::read_to_string(dir.join("control/postinst-pkg"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with("#!"))
        .map(|l| format!("{l}\n"))
        .collect();
    let post_install = ipk_script("postinst").replace(
        "default_postinst $0 $@\n",
        &format!("{exports}add_group_and_user\ndefault_postinst\n{own}"),
    );
    assert_ne!(post_install, ipk_script("postinst"));
    assert_eq!(script("post-install"), post_install);
    assert_eq!(
        script("post-upgrade"),
        format!(
            "#!/bin/sh\nexport PKG_UPGRADE=1\n{}",
            post_install.split_once('\n').unwrap().1
        )
    );
    let pre_deinstall = ipk_script("prerm").replace(
        "default_prerm $0 $@\n",
        &format!("{exports}default_prerm\n"),
    );
    assert_ne!(pre_deinstall, ipk_script("prerm"));
    assert_eq!(script("pre-deinstall"), pre_deinstall);
    assert_eq!(scripts.as_object().unwrap().len(), 3, "{scripts}");
}

#[test]
fn luci_apk_matches_its_ipk() {
    let dir = unpack(&package("luci"));
    check_apk(&dir, &apk_of("luci"), "noarch");
    println!("luci: the .apk holds the .ipk's payload, metadata and scripts");
}

#[test]
fn packages_run_under_qemu() {
    require("chronyd", "chrony");
    for arch in arches() {
        let dir = unpack(&package(&arch));
        check_members(&dir, &arch);
        check_apk(&dir, &apk_of(&arch), &arch);
        let qemu = qemu_for(&arch);
        let binary = dir.join("data/usr/sbin/ntpgate");
        let run = |args: &[&str]| {
            let out = run_under_qemu(&qemu, &binary, args);
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        let (ok, text) = run(&["--version"]);
        assert!(
            ok && text.trim() == format!("ntpgate {}", env!("CARGO_PKG_VERSION")),
            "{arch}: {text}"
        );

        // The packaged default config, beside a default OpenWrt network config.
        let etc = dir.join("data/etc/config");
        std::fs::write(
            etc.join("network"),
            "config interface 'lan'\n\toption device 'br-lan'\n",
        )
        .unwrap();
        let (ok, text) = run(&[
            "check",
            "--config",
            &etc.join("ntpgate").display().to_string(),
        ]);
        assert!(ok && text.contains("OK (0 warning(s))"), "{arch}: {text}");

        // Serving: our client checks every field, chronyd measures it.
        let port = free_port();
        let mut cmd = Command::new(&qemu);
        cmd.arg(&binary);
        let d = Daemon::start_with(
            cmd,
            &format!(
                "config server\n\tlist listen '127.0.0.1'\n\toption port '{port}'\n\toption local_stratum '3'\n"
            ),
            1,
        );
        d.wait_for_log(
            |l| l.contains("serving the local clock"),
            "the local clock served",
        );
        let server = format!("127.0.0.1:{port}").parse().unwrap();
        for version in [1u8, 2, 3, 4] {
            let sent = ntp_now();
            let reply = exchange(
                "127.0.0.1:0".parse().unwrap(),
                server,
                &request(version, if version == 1 { 0 } else { 3 }, 6, sent),
                Duration::from_secs(2),
            )
            .unwrap_or_else(|| panic!("{arch}: no answer to NTPv{version}"));
            let received = ntp_now();
            assert_eq!(reply.len(), 48, "{arch}");
            assert_eq!(reply[0] >> 6, 0, "{arch}: leap");
            assert_eq!((reply[0] >> 3) & 7, version, "{arch}: version echoed");
            assert_eq!(reply[0] & 7, 4, "{arch}: mode server, for NTPv1 too");
            assert_eq!(reply[1], 3, "{arch}: stratum");
            assert_eq!(&reply[12..16], b"LOCL", "{arch}: refid");
            assert_eq!(u64_at(&reply, 24), sent, "{arch}: origin is our transmit");
            let (rx, tx) = (u64_at(&reply, 32), u64_at(&reply, 40));
            assert!(
                sent <= rx && rx <= tx && tx <= received,
                "{arch}: timestamps in order"
            );
            let reference = u64_at(&reply, 16);
            assert!(reference <= tx && reference > 0, "{arch}: reference time");
        }
        let (ok, stderr, log) = chronyd_client(
            &format!("server 127.0.0.1 port {port} iburst maxsamples 4"),
            "measurements",
            20,
        );
        assert!(ok, "{arch}: chronyd -Q:\n{stderr}");
        let measured = rows(&log);
        assert!(measured.len() >= 3, "{arch}: {log}");
        for r in measured {
            assert_eq!(
                (r[3].as_str(), r[4].as_str()),
                ("N", "3"),
                "{arch}: leap, stratum"
            );
            assert_eq!(
                (r[5].as_str(), r[6].as_str(), r[7].as_str()),
                ("111", "111", "1111"),
                "{arch}: chrony's tests"
            );
        }
        let (status, log) = d.stop();
        assert!(status.success(), "{arch}: {log}");
        println!("{arch}: package checked, served NTPv1-4 and chronyd under {qemu}");
    }
}

/// What works under qemu-user of the firewall path, tested: the daemon
/// (emulated) runs nft (a host program) to add its sets, chain and rules to
/// a table in a namespace; where qemu translates the first netlink dump
/// (not on big-endian mips, whose link dump comes back empty), the hole is
/// planned and its element written. qemu's failing later dumps are
/// written down in BENCHMARKS.md, not tested.
#[test]
fn nft_and_netlink_under_qemu() {
    require("nft", "nftables");
    for arch in arches() {
        let dir = unpack(&package(&arch));
        let ns = Netns::new();
        let ip = |args: &str| {
            run_ok(
                Command::new("ip")
                    .args(["-n", &ns.name])
                    .args(args.split_whitespace()),
            )
        };
        ip("link add br-lan type veth peer name peer0");
        ip("addr add 2001:db8:1::1/64 dev br-lan nodad");
        ip("link set br-lan up");
        ip("link set peer0 up");
        run_ok(ns.command("nft").arg(
            "add table inet filter; add chain inet filter forward { type filter hook forward priority 0; policy drop; }; add chain inet filter input { type filter hook input priority 0; policy accept; }",
        ));
        let mut cmd = ns.command(qemu_for(&arch));
        cmd.arg(dir.join("data/usr/sbin/ntpgate"));
        let d = Daemon::start_with(
            cmd,
            "config server\n\tlist listen '::1'\n\toption port '12300'\n\toption local_stratum '3'\nconfig firewall\n\toption table 'filter'\n\toption create '1'\nconfig pinhole 'nas'\n\toption device 'br-lan'\n\toption suffix '::50'\n",
            1,
        );
        d.wait_for_log(|l| l.contains("pinholes: added"), "nft adding our objects");
        let table = run_ok(ns.command("nft").args(["list", "table", "inet", "filter"]));
        assert!(
            table.contains("set ntpgate_lan6") && table.contains("chain ntpgate_limit"),
            "{arch}: {table}"
        );
        if !arch.starts_with("mips_") {
            let opened = within(Duration::from_secs(10), || {
                run_ok(
                    ns.command("nft")
                        .args(["list", "set", "inet", "filter", "ntpgate_lan6"]),
                )
                .contains("2001:db8:1::50")
            });
            assert!(opened.is_some(), "{arch}: {}", d.log());
        }
        let (status, log) = d.stop();
        assert!(status.success(), "{arch}: {log}");
        println!(
            "{arch}: nft under qemu works; {}",
            if arch.starts_with("mips_") {
                "netlink dumps are not translated"
            } else {
                "the first netlink dump is"
            }
        );
    }
}

/// The router build prints nothing for `{:?}` (`-Zfmt-debug=none`): what a
/// user reads from it, run under qemu, is checked whole, so that a message
/// that went through Debug (ours or a dependency's) shows up blank here.
#[test]
fn router_build_messages_are_whole_under_qemu() {
    for arch in arches() {
        let dir = unpack(&package(&arch));
        let qemu = qemu_for(&arch);
        let binary = dir.join("data/usr/sbin/ntpgate");
        let run = |args: &[&str]| {
            let out = run_under_qemu(&qemu, &binary, args);
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };

        // A broken config: file, line, option and the reason, per problem.
        let config = dir.join("broken");
        std::fs::write(
            &config,
            "config server\n\toption port 'abc'\n\toption bogus_opt '1'\n",
        )
        .unwrap();
        let path = config.display().to_string();
        let (code, out, err) = run(&["check", "--config", &path]);
        assert_eq!(code, Some(1), "{arch}: {out}{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                format!("{path}:2: error: port: 'abc' is not a whole number from 1 to 65535"),
                format!("{path}:3: error: unknown option 'bogus_opt' in the server section"),
                format!("{path}: 2 error(s), 0 warning(s): the daemon would refuse this file"),
            ],
            "{arch}: stderr {err}"
        );

        // A file that cannot be read: the path and the system's reason.
        let missing = dir.join("missing").display().to_string();
        let (code, _, err) = run(&["run", "--config", &missing]);
        assert_eq!(code, Some(1), "{arch}: {err}");
        assert!(
            err.contains(&format!(
                "error: {missing}:0: cannot read: No such file or directory (os error 2)"
            )),
            "{arch}: {err}"
        );

        // clap's errors name the argument and show the usage.
        let (code, _, err) = run(&["run", "--bogus"]);
        assert_eq!(code, Some(2), "{arch}: {err}");
        assert!(
            err.contains("error: unexpected argument '--bogus' found")
                && err.contains("Usage: ntpgate run [OPTIONS]"),
            "{arch}: {err}"
        );
        let (code, out, _) = run(&["--help"]);
        assert_eq!(code, Some(0), "{arch}: {out}");
        assert!(
            out.contains("Usage: ntpgate <COMMAND>") && out.contains("  check "),
            "{arch}: {out}"
        );

        // A query nobody answers: the address and the system's reason (its
        // number is the target's: ECONNREFUSED is 146 on MIPS).
        let port = free_port();
        let (code, out, err) = run(&["query", &format!("127.0.0.1:{port}")]);
        let err = out + &err;
        assert_eq!(code, Some(1), "{arch}: {err}");
        assert!(
            err.contains(&format!(
                "no answer from 127.0.0.1:{port}: Connection refused (os error "
            )),
            "{arch}: {err}"
        );
        println!("{arch}: the messages users read are whole under {qemu}");
    }
}
