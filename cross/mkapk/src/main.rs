//! mkapk: `build` an apk v3 package as `apk mkpkg` does, `dump` one as
//! `apk adbdump` does, `extract` one's payload, checked.

use std::path::PathBuf;
use std::process::ExitCode;

use mkapk::{build, dump, read};

const USAGE: &str = "\
usage: mkapk build [-c none|deflate] --info KEY:VALUE... --files DIR
                   [--script TYPE:FILE]... --output FILE
       mkapk dump [--format yaml|json] FILE
       mkapk extract FILE DIR

build  writes what `apk mkpkg` (apk-tools 3.0.6) writes for the same
       arguments, every path owned by root:root as under OpenWrt's
       fakeroot; SOURCE_DATE_EPOCH, when set, dates every file. The
       default compression is deflate, as mkpkg's.
dump   prints what `apk adbdump` prints.
extract writes the payload under DIR with its modes, each file checked
       against its size and SHA-256.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mkapk: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    match args.split_first() {
        Some((cmd, rest)) if cmd == "build" => cmd_build(rest),
        Some((cmd, rest)) if cmd == "dump" => cmd_dump(rest),
        Some((cmd, rest)) if cmd == "extract" => cmd_extract(rest),
        Some((cmd, _)) if cmd == "--help" || cmd == "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("expected a command\n{USAGE}")),
    }
}

/// `KEY:VALUE` split at the first colon, as mkpkg splits it.
fn split_pair<'a>(option: &str, arg: &'a str) -> Result<(&'a str, &'a str), String> {
    arg.split_once(':')
        .ok_or_else(|| format!("{option} {arg:?}: expected KEY:VALUE"))
}

fn cmd_build(args: &[String]) -> Result<(), String> {
    let mut info = Vec::new();
    let mut scripts = Vec::new();
    let (mut files, mut output, mut deflate) = (None, None, true);
    let mut args = args.iter();
    while let Some(option) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{option} needs a value"));
        match option.as_str() {
            "--info" => {
                let (key, val) = split_pair(option, value()?)?;
                info.push((key.to_string(), val.to_string()));
            }
            "--files" => files = Some(PathBuf::from(value()?)),
            "--script" => {
                let (kind, file) = split_pair(option, value()?)?;
                let text = std::fs::read(file)
                    .map_err(|e| format!("failed to load script {file}: {e}"))?;
                scripts.push((kind.to_string(), text));
            }
            "--output" => output = Some(PathBuf::from(value()?)),
            "-c" | "--compression" => {
                deflate = match value()?.as_str() {
                    "deflate" => true,
                    "none" => false,
                    other => return Err(format!("compression {other:?}: none or deflate")),
                }
            }
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    let mtime = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) if !epoch.is_empty() => Some(
            epoch
                .parse()
                .map_err(|_| format!("SOURCE_DATE_EPOCH {epoch:?} is not a number"))?,
        ),
        _ => None,
    };
    let spec = build::Spec {
        info,
        files: files.ok_or("--files is required")?,
        scripts,
        mtime,
    };
    let output = output.ok_or("--output is required")?;
    let stream = build::package(&spec)?;
    let bytes = if deflate {
        build::deflate(&stream)
    } else {
        stream
    };
    // Written aside and renamed, so that no reader sees half a package.
    let partial = output.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, &output))
        .map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            format!("{}: {e}", output.display())
        })
}

fn read_stream(file: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    read::stream(&bytes).map_err(|e| format!("{file}: {e}"))
}

fn cmd_dump(args: &[String]) -> Result<(), String> {
    let (format, file) = match args {
        [file] => (dump::Format::Yaml, file),
        [option, format, file] if option == "--format" => match format.as_str() {
            "yaml" => (dump::Format::Yaml, file),
            "json" => (dump::Format::Json, file),
            other => return Err(format!("format {other:?}: yaml or json")),
        },
        _ => return Err(format!("dump takes a file\n{USAGE}")),
    };
    let text = dump::dump(&read_stream(file)?, format).map_err(|e| format!("{file}: {e}"))?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&text)
        .map_err(|e| format!("stdout: {e}"))
}

fn cmd_extract(args: &[String]) -> Result<(), String> {
    let [file, dir] = args else {
        return Err(format!("extract takes a file and a directory\n{USAGE}"));
    };
    read::extract(&read_stream(file)?, dir.as_ref()).map_err(|e| format!("{file}: {e}"))
}
