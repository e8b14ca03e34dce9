//! scripts/fuzz itself: a target that crashes and a target that does not
//! build each make it exit non-zero, named with the input that crashed. It
//! runs on a copy of tests/fuzz-runner, a throwaway cargo-fuzz project, so
//! that the project's own targets stay clean.

use std::path::Path;
use std::process::Command;

#[test]
fn the_fuzz_runner_fails_on_a_crash_and_on_a_target_that_does_not_build() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The same place every run, so that libFuzzer is built once.
    let project = root.join("target/fuzz-runner-check");
    let _ = std::fs::remove_dir_all(project.join("artifacts"));
    let _ = std::fs::remove_dir_all(project.join("corpus"));
    std::fs::create_dir_all(project.join("fuzz_targets")).unwrap();
    std::fs::create_dir_all(project.join("seeds/crash")).unwrap();
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "fuzz_targets/crash.rs",
        "fuzz_targets/broken.rs",
        "seeds/crash/boom",
    ] {
        std::fs::copy(
            root.join("tests/fuzz-runner").join(file),
            project.join(file),
        )
        .unwrap();
    }
    let out = Command::new(root.join("scripts/fuzz"))
        .arg("5")
        .env("FUZZ_DIR", &project)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: fuzz target broken: does not build"),
        "{stderr}"
    );
    let crashed = stderr
        .lines()
        .find(|l| l.starts_with("error: fuzz target crash: crashed"))
        .unwrap_or_else(|| panic!("no crash reported:\n{stderr}"));
    // The line names the input libFuzzer kept, and it is the seed.
    let input = crashed
        .split("input: ")
        .nth(1)
        .and_then(|rest| rest.split(" (log: ").next())
        .unwrap_or_else(|| panic!("no input named: {crashed}"));
    assert_eq!(
        std::fs::read(input).unwrap_or_else(|e| panic!("{input}: {e}")),
        b"boom"
    );
}
