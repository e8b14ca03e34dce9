//! Router builds are made with `-Zfmt-debug=none` (cross/lib.sh), which
//! turns every `{:?}` into nothing: a message written with Debug would
//! reach the log or the user empty. So no message the daemon or the
//! command line makes goes through Debug: the source says so (outside test
//! code), and the router binary's own messages say something.

mod common;

use std::path::Path;

/// The code of a source file without its test module (ours sit at the end
/// of each file, behind `#[cfg(test)]`).
fn outside_tests(text: &str) -> &str {
    text.split("\n#[cfg(test)]\n").next().unwrap_or(text)
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_message_is_written_with_debug() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    // The simulator is never in a router build.
    files.retain(|f| !f.starts_with(root.join("sim")));
    assert!(files.len() > 30, "{files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in outside_tests(&text).lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if code.contains(":?}") || code.contains(":#?}") {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "Debug formatting prints nothing in router builds (-Zfmt-debug=none):\n{}",
        found.join("\n")
    );
}
