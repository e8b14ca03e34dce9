//! mkapk against the real apk-tools: `../shared/fixtures/apk/` (beside the
//! checkout) holds a package made by `apk mkpkg` 3.0.6 from `input.tar`,
//! uncompressed and deflated, and `apk adbdump`'s reading of it. From the
//! same input and fields mkapk must write the same bytes, and read both
//! files into the same dump.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/apk");

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(FIXTURES).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fresh directory under the target directory, one per call (tests run
/// in parallel).
fn scratch(name: &str) -> PathBuf {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `input.tar` unpacked with its modes and mtimes: `root/` and `scripts/`.
fn input() -> PathBuf {
    let dir = scratch("input");
    let status = Command::new("tar")
        .args([
            "-xpf",
            &format!("{FIXTURES}/input.tar"),
            "--numeric-owner",
            "-C",
        ])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn mkapk(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mkapk"))
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

/// The fixture README's `apk mkpkg` command, through mkapk's CLI.
fn build_fixture(compression: &str) -> Vec<u8> {
    let input = input();
    let out = input.join("out.apk");
    let s = |p: &Path| p.display().to_string();
    let (post_install, pre_deinstall) = (
        s(&input.join("scripts/post-install")),
        s(&input.join("scripts/pre-deinstall")),
    );
    let result = mkapk(&[
        "build",
        "-c",
        compression,
        "--info",
        "name:hello",
        "--info",
        "version:1.0.0-r1",
        "--info",
        "description:A test package",
        "--info",
        "arch:x86_64",
        "--info",
        "license:GPL-2.0-or-later",
        "--info",
        "origin:feeds/test/hello",
        "--info",
        "url:https://example.org",
        "--info",
        "maintainer:Test <test@example.org>",
        "--info",
        "depends:libc",
        "--info",
        "provides:hello-any",
        "--files",
        &s(&input.join("root")),
        "--script",
        &format!("post-install:{post_install}"),
        "--script",
        &format!("post-upgrade:{post_install}"),
        "--script",
        &format!("pre-deinstall:{pre_deinstall}"),
        "--output",
        &s(&out),
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::read(out).unwrap()
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))
}

#[test]
fn writes_the_fixture_byte_for_byte() {
    let ours = build_fixture("none");
    let real = fixture("hello-none.apk");
    if let Some(at) = first_difference(&ours, &real) {
        panic!(
            "first difference at byte {at:#x} of {} (ours) / {} (apk mkpkg)",
            ours.len(),
            real.len()
        );
    }
}

#[test]
fn deflated_output_inflates_to_the_fixture() {
    let ours = build_fixture("deflate");
    assert_eq!(&ours[..4], b"ADBd");
    let real = fixture("hello-none.apk");
    assert!(mkapk::read::stream(&ours).unwrap() == real);
    // The real tool's deflated file holds the same stream.
    assert!(mkapk::read::stream(&fixture("hello-deflate.apk")).unwrap() == real);
    // zlib and miniz_oxide may pick different matches: the compressed
    // bytes are not compared, only noted.
    if ours != fixture("hello-deflate.apk") {
        println!(
            "deflated: {} bytes (mkapk) / {} bytes (apk mkpkg), same stream",
            ours.len(),
            fixture("hello-deflate.apk").len()
        );
    }
}

#[test]
fn dumps_both_fixture_files_as_adbdump() {
    let expected = String::from_utf8(fixture("hello-none.adbdump.txt")).unwrap();
    for name in ["hello-none.apk", "hello-deflate.apk"] {
        let out = mkapk(&["dump", &format!("{FIXTURES}/{name}")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ours = String::from_utf8(out.stdout).unwrap();
        if ours != expected {
            let line = ours
                .lines()
                .zip(expected.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(ours.lines().count().min(expected.lines().count()));
            panic!(
                "{name}: dump differs from adbdump's at line {}:\n ours: {:?}\n  apk: {:?}",
                line + 1,
                ours.lines().nth(line),
                expected.lines().nth(line)
            );
        }
    }
}

#[test]
fn json_dump_reads_the_fixture() {
    let out = mkapk(&[
        "dump",
        "--format",
        "json",
        &format!("{FIXTURES}/hello-deflate.apk"),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "\"name\": \"hello\"",
        "\"hashes\": \"f5528e21e463bbf7b0b774640531433ee851aa6e\"",
        "\"depends\": [\n      \"libc\"\n    ]",
        "\"mode\": 384",
        "\"post-install\": \"#!/bin/sh\\n[ \\\"${IPKG_NO_SCRIPT}\\\" = \\\"1\\\" ] && exit 0\\n",
    ] {
        assert!(text.contains(expected), "{expected} in:\n{text}");
    }
    assert!(
        text.starts_with("{\n  \"info\": {\n    \"name\": \"hello\",\n"),
        "{text}"
    );
    assert!(text.ends_with("\n}\n"), "{text}");
}

#[test]
fn extracts_the_fixture_payload() {
    let input = input();
    let dest = scratch("extract");
    let out = mkapk(&[
        "extract",
        &format!("{FIXTURES}/hello-deflate.apk"),
        &dest.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = |dir: &Path| {
        let out = Command::new("find")
            .arg(".")
            .args(["-printf", "%M %s %p\n"])
            .current_dir(dir)
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.ends_with(" ."))
            .map(|l| {
                // Directory sizes depend on the file system.
                let f: Vec<&str> = l.splitn(3, ' ').collect();
                if f[0].starts_with('d') {
                    format!("{} {}", f[0], f[2])
                } else {
                    l.to_string()
                }
            })
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(listing(&dest), listing(&input.join("root")));
    for file in [
        "etc/config/hello",
        "usr/sbin/hello",
        "lib/apk/packages/hello.list",
    ] {
        assert_eq!(
            std::fs::read(dest.join(file)).unwrap(),
            std::fs::read(input.join("root").join(file)).unwrap(),
            "{file}"
        );
    }
}

/// Offset of the first data block's payload in `hello-none.apk`: after
/// the 8-byte file header and the padded ADB block.
fn first_data_payload(stream: &[u8]) -> usize {
    let adb = u32::from_le_bytes(stream[8..12].try_into().unwrap()) as usize & 0x3fff_ffff;
    8 + adb.next_multiple_of(8) + 4 + 8
}

#[test]
fn damaged_packages_are_refused_with_a_reason() {
    let good = fixture("hello-none.apk");
    let dir = scratch("damaged");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "no ADB header"),
        (
            "short ADBc",
            b"ADBc\0".to_vec(),
            "truncated compression header",
        ),
        ("truncated", good[..good.len() - 20].to_vec(), "truncated"),
        (
            "flipped",
            {
                let mut bad = good.clone();
                bad[first_data_payload(&good)] ^= 1;
                bad
            },
            "SHA-256 does not match",
        ),
        (
            "bad deflate",
            [&b"ADBd"[..], &[0xff; 16]].concat(),
            "bad deflate",
        ),
        (
            "schema",
            {
                let mut bad = good.clone();
                bad[4..8].copy_from_slice(b"indx");
                bad
            },
            "not a package",
        ),
    ];
    for (name, bytes, reason) in cases {
        let file = dir.join(format!("{name}.apk"));
        std::fs::write(&file, bytes).unwrap();
        let out = mkapk(&[
            "extract",
            &file.display().to_string(),
            &dir.join(name).display().to_string(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(reason) && !stderr.contains("panicked"),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn bad_build_arguments_are_refused_with_a_reason() {
    let input = input();
    let root = input.join("root").display().to_string();
    let out = input.join("x.apk").display().to_string();
    for (args, reason) in [
        (
            vec![
                "--info",
                "name:-bad",
                "--info",
                "version:1",
                "--info",
                "arch:noarch",
            ],
            "invalid package name",
        ),
        (
            vec![
                "--info",
                "name:a",
                "--info",
                "version:1.x",
                "--info",
                "arch:noarch",
            ],
            "invalid version",
        ),
        (
            vec!["--info", "name:a", "--info", "arch:noarch"],
            "'version' not provided",
        ),
        (
            vec![
                "--info",
                "name:a",
                "--info",
                "version:1",
                "--info",
                "installed-size:5",
                "--info",
                "arch:noarch",
            ],
            "invalid info field",
        ),
        (
            vec![
                "--info",
                "name:a",
                "--info",
                "version:1",
                "--info",
                "arch:noarch",
                "--info",
                "depends:libc>=x",
            ],
            "invalid dependency",
        ),
        (
            vec![
                "--info",
                "name:a",
                "--info",
                "version:1",
                "--info",
                "arch:noarch",
                "--info",
                "depends:b>1 b<3",
            ],
            "listed twice",
        ),
        (
            vec![
                "--info",
                "name:a",
                "--info",
                "version:1",
                "--info",
                "arch:noarch",
                "--script",
                "post-instal:/dev/null",
            ],
            "invalid script type",
        ),
        (vec!["--info", "nameless"], "expected KEY:VALUE"),
    ] {
        let mut all = vec!["build", "--files", &root, "--output", &out];
        all.extend(args.iter().copied());
        let result = mkapk(&all);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(
            !result.status.success() && stderr.contains(reason),
            "{args:?}: {stderr}"
        );
    }
}

/// Beyond the fixture's single dependency: apk sorts a dependency list by
/// name and drops repeats (`adb_wa_sort_unique`), as the 25.12 package
/// indexes show (libc among the others in name order).
#[test]
fn dependencies_are_sorted_and_unique() {
    let input = input();
    let out = input.join("deps.apk").display().to_string();
    let result = mkapk(&[
        "build",
        "--info",
        "name:a",
        "--info",
        "version:1-r1",
        "--info",
        "arch:noarch",
        "--info",
        "depends:libc nftables-json kmod-nft-core firewall4>=2 libc",
        "--files",
        &input.join("root").display().to_string(),
        "--output",
        &out,
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let dump = String::from_utf8(mkapk(&["dump", &out]).stdout).unwrap();
    assert!(
        dump.contains(
            "  depends: # 4 items\n    - firewall4>=2\n    - kmod-nft-core\n    - libc\n    - nftables-json\n"
        ),
        "{dump}"
    );
}
