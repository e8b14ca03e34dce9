//! The `ntpgate` command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[cfg(feature = "demo")]
mod demo;

use clap::{Parser, Subcommand};
use ntpgate::config::{self, Severity};
use ntpgate::daemon::{self, ConfigSource};
use ntpgate::ubus::blob::Msg;
use ntpgate::ubus::session::{self, Connection};

#[derive(Parser)]
#[command(
    name = "ntpgate",
    version,
    about = "NTP server for OpenWrt routers that serve time to the world",
    long_about = "ntpgate serves NTP (versions 1 to 4) from an OpenWrt router, with per-client \
rate limiting and allow/deny lists, configured in /etc/config/ntpgate (UCI).\n\n\
Start it with the init script (/etc/init.d/ntpgate start); use `check` after editing the \
config and `query` to see what a server answers."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (what the init script starts).
    ///
    /// Logs go to stderr (or syslog), one line per event. SIGHUP re-reads the config
    /// (a config with errors is refused and the running one kept), SIGUSR1
    /// logs the server counters, SIGTERM or SIGINT stop.
    Run {
        /// The UCI config file.
        #[arg(short, long, value_name = "FILE", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Log to syslog (facility daemon, each line at its own priority)
        /// instead of stderr: at /dev/log, or at SOCKET. The init script
        /// passes it.
        #[arg(long, value_name = "SOCKET", num_args = 0..=1, default_missing_value = "/dev/log")]
        syslog: Option<PathBuf>,
    },
    /// Check a config file and print every problem in it.
    ///
    /// Each line reads FILE:LINE: error|warning: what is wrong. The exit
    /// status is 1 when there are errors (the daemon would refuse the file),
    /// 0 otherwise.
    Check {
        /// The UCI config file.
        #[arg(short, long, value_name = "FILE", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Ask an NTP server for the time once and print its answer.
    ///
    /// Shows offset, delay, stratum, refid, leap and the root values, like
    /// ntpdig. TARGET is HOST, HOST:PORT, an IPv6 address, or [IPV6]:PORT;
    /// the port defaults to 123. Exit status: 0 for a synchronised answer,
    /// 1 for none, 2 when the server says it is not synchronised.
    Query {
        #[arg(value_name = "TARGET")]
        target: String,
        /// Seconds to wait for the answer.
        #[arg(short, long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// Show the running daemon's status (asked over ubus).
    ///
    /// A summary, the upstreams (like `chronyc sources`), the server's
    /// counters and rates (like `chronyc serverstats`) and the pinholes.
    /// Exit status: 0 when synchronised, 2 when not, 1 when the daemon
    /// cannot be asked.
    Status {
        /// Print the status model as JSON, as `ubus call ntpgate status` does.
        #[arg(long)]
        json: bool,
        /// ubusd's socket.
        #[arg(long, value_name = "PATH", default_value = ntpgate::ubus::session::DEFAULT_SOCKET)]
        ubus_socket: PathBuf,
    },
    /// Show ntpgate at work; never changes the clock, never leaves this machine.
    ///
    /// As root (with ip and nft): builds a WAN, a router and a LAN host in
    /// network namespaces, runs ntpgate on the router with a pinhole for
    /// the LAN host's NTP server, and shows a query crossing the router,
    /// the hole moving on a prefix change, and the status; then removes it
    /// all. Otherwise, or with --loopback: serves this machine's clock at
    /// stratum 10 (a lab-only setting) on 127.0.0.1 and ::1, port 12300,
    /// until Ctrl-C.
    Demo {
        /// The loopback server, even as root.
        #[arg(long)]
        loopback: bool,
    },
}

/// The demo's embedded config: loopback only, an unprivileged port, and the
/// local clock as the reference.
const DEMO_CONFIG: &str = "\
config server 'main'
\tlist listen '127.0.0.1'
\tlist listen '::1'
\toption port '12300'
\toption local_stratum '10'
";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run { config, syslog } => {
            if let Some(socket) = syslog {
                ntpgate::log::to_syslog(socket);
            }
            daemon::run(ConfigSource::File(config))
        }
        Command::Check { config } => check(&config),
        Command::Query { target, timeout } => {
            if !(timeout.is_finite() && timeout > 0.0) {
                eprintln!("ntpgate query: --timeout must be a positive number of seconds");
                return ExitCode::from(1);
            }
            ntpgate::query::run(&target, Duration::from_secs_f64(timeout))
        }
        Command::Status { json, ubus_socket } => status(&ubus_socket, json),
        Command::Demo { loopback } => {
            #[cfg(feature = "demo")]
            if !loopback {
                match demo::unavailable() {
                    None => {
                        return match demo::network_demo() {
                            Ok(()) => ExitCode::SUCCESS,
                            Err(e) => {
                                eprintln!("ntpgate demo: {e}");
                                ExitCode::from(1)
                            }
                        };
                    }
                    Some(why) => eprintln!(
                        "ntpgate demo: the network demo (namespaces, pinhole) is skipped: {why}."
                    ),
                }
            }
            #[cfg(not(feature = "demo"))]
            let _ = loopback;
            eprintln!(
                "ntpgate demo: serving this machine's clock on 127.0.0.1:12300 and [::1]:12300.\n\
                 Ask it from another terminal:  cargo run --release -- query 127.0.0.1:12300\n\
                 or with chrony:               chronyd -Q 'server 127.0.0.1 port 12300 iburst'\n\
                 Stop it with Ctrl-C."
            );
            daemon::run(ConfigSource::Embedded {
                label: "(demo config)",
                text: DEMO_CONFIG,
            })
        }
    };
    ExitCode::from(code as u8)
}

fn status(socket: &std::path::Path, as_json: bool) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ntpgate status: {e}");
            return 1;
        }
    };
    let asked = runtime.block_on(async {
        let mut c = Connection::connect(socket).await?;
        tokio::time::timeout(
            Duration::from_secs(5),
            c.call("ntpgate", "status", Vec::new()),
        )
        .await
        .unwrap_or(Err(session::Error::Io("no answer within 5 s".into())))
    });
    let fields = match asked {
        Ok(fields) => fields,
        Err(session::Error::Status(4)) => {
            eprintln!("ntpgate status: the daemon is not running (no ntpgate object on ubus)");
            return 1;
        }
        Err(e) => {
            eprintln!("ntpgate status: {e}");
            return 1;
        }
    };
    let value = Msg::Table(fields).to_json();
    let text = if as_json {
        value.to_string()
    } else {
        ntpgate::status::render(&value)
    };
    let _ = writeln!(std::io::stdout(), "{}", text.trim_end());
    if value["sync"]["synchronised"].as_bool() == Some(true) {
        0
    } else {
        2
    }
}

fn check(path: &std::path::Path) -> i32 {
    let loaded = config::load(path);
    let mut out = std::io::stdout().lock();
    // Write errors (a closed pipe) are ignored: the exit status tells.
    for d in &loaded.diagnostics {
        let _ = writeln!(out, "{d}");
    }
    let errors = loaded.errors().count();
    let warnings = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    if errors > 0 {
        let _ = writeln!(
            out,
            "{}: {errors} error(s), {warnings} warning(s): the daemon would refuse this file",
            path.display()
        );
        1
    } else {
        let _ = writeln!(out, "{}: OK ({warnings} warning(s))", path.display());
        0
    }
}
