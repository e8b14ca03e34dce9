//! `/etc/config/ntpgate` -> a typed, validated [`Config`].
//!
//! Every problem found is reported with the file and line it comes from,
//! all at once, as errors (the config is refused) or warnings (it runs, but
//! someone should look). Nothing is silently ignored.

pub mod uci;

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use crate::net::Cidr;
use crate::ntp::ratelimit::RateLimitSettings;
use crate::ntp::server::{AccessPolicy, STRATUM_UNSYNC};
use uci::{Section, UciFile};

pub const DEFAULT_PATH: &str = "/etc/config/ntpgate";

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    pub enabled: bool,
    pub listen: Vec<IpAddr>,
    pub port: u16,
    /// Lab only: serve the local clock as the reference at this stratum.
    pub local_stratum: Option<u8>,
    pub access: AccessPolicy,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            enabled: true,
            listen: vec![IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)],
            port: 123,
            local_stratum: None,
            access: AccessPolicy {
                ratelimit: Some(RateLimitSettings::default()),
                ..AccessPolicy::default()
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}: {level}: {}", self.file, self.line, self.message)
    }
}

/// The outcome of reading a config: the config if it has no errors, and
/// every diagnostic either way.
#[derive(Debug)]
pub struct Loaded {
    pub config: Option<Config>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }
}

/// Read and validate the file at `path`.
pub fn load(path: &Path) -> Loaded {
    let file = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => parse(&text, &file),
            Err(e) => {
                let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                refused(&file, line, "not valid UTF-8 text".into())
            }
        },
        Err(e) => refused(&file, 0, format!("cannot read: {e}")),
    }
}

fn refused(file: &str, line: usize, message: String) -> Loaded {
    Loaded {
        config: None,
        diagnostics: vec![Diagnostic {
            file: file.into(),
            line,
            severity: Severity::Error,
            message,
        }],
    }
}

/// Validate config text; `file` names it in diagnostics.
pub fn parse(text: &str, file: &str) -> Loaded {
    let mut report = Report {
        file,
        diagnostics: Vec::new(),
    };
    let config = match uci::parse(text) {
        Ok(uci) => Some(build(&uci, &mut report)),
        Err(errors) => {
            for e in errors {
                report.error(e.line, e.message);
            }
            None
        }
    };
    report.diagnostics.sort_by_key(|d| d.line);
    let has_errors = report
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error);
    Loaded {
        config: if has_errors { None } else { config },
        diagnostics: report.diagnostics,
    }
}

struct Report<'a> {
    file: &'a str,
    diagnostics: Vec<Diagnostic>,
}

impl Report<'_> {
    fn push(&mut self, line: usize, severity: Severity, message: String) {
        self.diagnostics.push(Diagnostic {
            file: self.file.into(),
            line,
            severity,
            message,
        });
    }

    fn error(&mut self, line: usize, message: String) {
        self.push(line, Severity::Error, message);
    }

    fn warning(&mut self, line: usize, message: String) {
        self.push(line, Severity::Warning, message);
    }
}

/// Options of later features: known names, accepted, but not acted on yet.
const NOT_YET_USED: &[&str] = &[
    "clock_control",
    "upstream",
    "min_sources",
    "makestep",
    "driftfile",
    "serve_wan",
    "ubus_socket",
];

const LIST_OPTIONS: &[&str] = &["listen", "allow", "deny", "upstream"];

const SINGLE_OPTIONS: &[&str] = &[
    "enabled",
    "port",
    "local_stratum",
    "ratelimit",
    "ratelimit_interval",
    "ratelimit_burst",
    "ratelimit_leak",
    "ratelimit_kod",
    "ratelimit_prefix6",
    "clock_control",
    "min_sources",
    "makestep",
    "driftfile",
    "serve_wan",
    "ubus_socket",
];

fn build(file: &UciFile, report: &mut Report<'_>) -> Config {
    let mut server_sections: Vec<&Section> = Vec::new();
    for section in &file.sections {
        match section.kind.as_str() {
            "server" => server_sections.push(section),
            "pinhole" => report.warning(
                section.line,
                "'pinhole' sections are not supported by this version yet; this one is ignored"
                    .into(),
            ),
            other => report.error(
                section.line,
                format!("unknown section type '{other}' (expected 'server' or 'pinhole')"),
            ),
        }
    }
    // Sections with one name are one section, as libuci merges them.
    let mut options: Vec<&uci::UciOption> = Vec::new();
    if let Some((first, rest)) = server_sections.split_first() {
        options.extend(&first.options);
        for s in rest {
            if s.name.is_some() && s.name == first.name {
                options.extend(&s.options);
            } else {
                report.error(
                    s.line,
                    format!(
                        "a second 'server' section; there is one (line {})",
                        first.line
                    ),
                );
            }
        }
    }
    let options = resolve(&options, report);
    Config {
        server: server_config(&options, report),
    }
}

/// One option after libuci's rules for repeats: `list` appends (keeping an
/// earlier `option` value first), `option` replaces.
#[derive(Clone, Debug)]
struct Resolved {
    name: String,
    /// Values with their lines.
    values: Vec<(String, usize)>,
    is_list: bool,
}

fn resolve(options: &[&uci::UciOption], report: &mut Report<'_>) -> Vec<Resolved> {
    let mut out: Vec<Resolved> = Vec::new();
    for o in options {
        let existing = out.iter().position(|r| r.name == o.name);
        // libuci ignores `option x ''`: it neither sets nor clears.
        if o.value.is_empty() && !o.is_list {
            continue;
        }
        if o.is_list && SINGLE_OPTIONS.contains(&o.name.as_str()) {
            report.error(
                o.line,
                format!(
                    "'{}' takes one value: write 'option {}', not 'list'",
                    o.name, o.name
                ),
            );
            continue;
        }
        match (existing, o.is_list) {
            (Some(i), true) => {
                out[i].values.push((o.value.clone(), o.line));
                out[i].is_list = true;
            }
            (Some(i), false) => {
                if !LIST_OPTIONS.contains(&o.name.as_str()) {
                    report.warning(
                        o.line,
                        format!(
                            "option '{}' set again (first on line {}); this value wins",
                            o.name, out[i].values[0].1
                        ),
                    );
                }
                out[i].values = vec![(o.value.clone(), o.line)];
                out[i].is_list = false;
            }
            (None, is_list) => out.push(Resolved {
                name: o.name.clone(),
                values: vec![(o.value.clone(), o.line)],
                is_list,
            }),
        }
    }
    out
}

fn server_config(options: &[Resolved], report: &mut Report<'_>) -> ServerConfig {
    let mut cfg = ServerConfig::default();
    let mut rl = RateLimitSettings::default();
    let mut ratelimit_on = true;
    for opt in options {
        let (value, line) = (opt.values[0].0.as_str(), opt.values[0].1);
        let name = opt.name.as_str();
        match name {
            "enabled" => {
                set(report, line, name, parse_bool(value), &mut cfg.enabled);
            }
            "listen" => {
                cfg.listen = opt
                    .values
                    .iter()
                    .filter_map(|(v, l)| match v.parse::<IpAddr>() {
                        Ok(ip) => Some(ip),
                        Err(_) => {
                            report
                                .error(*l, format!("listen: '{v}' is not an IPv4 or IPv6 address"));
                            None
                        }
                    })
                    .collect();
            }
            "port" => {
                set(
                    report,
                    line,
                    name,
                    parse_range::<u16>(value, 1, 65535),
                    &mut cfg.port,
                );
            }
            "local_stratum" => {
                let mut s = 0u8;
                if set(
                    report,
                    line,
                    name,
                    parse_range::<u8>(value, 1, STRATUM_UNSYNC - 1),
                    &mut s,
                ) {
                    cfg.local_stratum = Some(s);
                    report.warning(
                        line,
                        "local_stratum serves this router's own clock as if it were a reference: for labs, demos and tests only; a pool server must never use it"
                            .into(),
                    );
                }
            }
            "ratelimit" => {
                set(report, line, name, parse_bool(value), &mut ratelimit_on);
            }
            "ratelimit_interval" => {
                set(
                    report,
                    line,
                    name,
                    parse_seconds(value, 0.001, 3600.0),
                    &mut rl.interval,
                );
            }
            "ratelimit_burst" => {
                set(
                    report,
                    line,
                    name,
                    parse_range::<u32>(value, 1, 1024),
                    &mut rl.burst,
                );
            }
            "ratelimit_leak" => {
                if set(
                    report,
                    line,
                    name,
                    parse_range::<u8>(value, 0, 16),
                    &mut rl.leak,
                ) && rl.leak == 0
                {
                    report.warning(
                        line,
                        "ratelimit_leak 0 answers every limited request: rate limiting has no effect".into(),
                    );
                }
            }
            "ratelimit_kod" => {
                set(report, line, name, parse_bool(value), &mut rl.kod);
            }
            "ratelimit_prefix6" => {
                set(
                    report,
                    line,
                    name,
                    parse_range::<u8>(value, 16, 128),
                    &mut rl.prefix6,
                );
            }
            "allow" => cfg.access.allow = cidrs(opt, report),
            "deny" => cfg.access.deny = cidrs(opt, report),
            n if NOT_YET_USED.contains(&n) => report.warning(
                line,
                format!("option '{n}' is not used by this version of ntpgate yet; ignored"),
            ),
            other => report.error(
                line,
                format!("unknown option '{other}' in the server section"),
            ),
        }
    }
    cfg.access.ratelimit = ratelimit_on.then_some(rl);
    cfg
}

/// Store a parsed value or report why it is bad. True when stored.
fn set<T>(
    report: &mut Report<'_>,
    line: usize,
    name: &str,
    parsed: Result<T, String>,
    into: &mut T,
) -> bool {
    match parsed {
        Ok(v) => {
            *into = v;
            true
        }
        Err(why) => {
            report.error(line, format!("{name}: {why}"));
            false
        }
    }
}

fn cidrs(opt: &Resolved, report: &mut Report<'_>) -> Vec<Cidr> {
    opt.values
        .iter()
        .filter_map(|(v, line)| match Cidr::parse(v) {
            Ok((cidr, had_host_bits)) => {
                if had_host_bits {
                    report.warning(
                        *line,
                        format!("{}: '{v}' has host bits set; it means {cidr}", opt.name),
                    );
                }
                Some(cidr)
            }
            Err(why) => {
                report.error(*line, format!("{}: {why}", opt.name));
                None
            }
        })
        .collect()
}

/// UCI's boolean spellings, as libuci's `uci_validate_bool` and LuCI accept.
fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "yes" | "on" | "true" | "enabled" => Ok(true),
        "0" | "no" | "off" | "false" | "disabled" => Ok(false),
        _ => Err(format!("'{v}' is not a boolean (use 1 or 0)")),
    }
}

fn parse_range<T>(v: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    match v.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!("'{v}' is not a whole number from {min} to {max}")),
    }
}

fn parse_seconds(v: &str, min: f64, max: f64) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (min..=max).contains(&s) => Ok(s),
        _ => Err(format!(
            "'{v}' is not a number of seconds from {min} to {max}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(l: &Loaded) -> Vec<String> {
        l.diagnostics.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let l = parse("", "t");
        assert_eq!(l.config.unwrap().server, ServerConfig::default());
        assert!(l.diagnostics.is_empty());
    }

    #[test]
    fn design_example_parses() {
        let l = parse(
            "config server 'main'\n\toption enabled '1'\n\tlist listen '::'\n\tlist listen '127.0.0.1'\n\toption port '1123'\n\toption local_stratum ''\n\toption ratelimit '1'\n\toption ratelimit_interval '2'\n\toption ratelimit_burst '16'\n\toption ratelimit_leak '3'\n\toption ratelimit_kod '1'\n\toption ratelimit_prefix6 '56'\n\tlist allow '2001:db8::/32'\n\tlist deny '192.0.2.0/24'\n",
            "t",
        );
        assert!(l.diagnostics.is_empty(), "{:?}", messages(&l));
        let s = l.config.unwrap().server;
        assert_eq!(
            s.listen,
            [
                "::".parse::<IpAddr>().unwrap(),
                "127.0.0.1".parse().unwrap()
            ]
        );
        assert_eq!(s.port, 1123);
        assert_eq!(s.local_stratum, None);
        let rl = s.access.ratelimit.unwrap();
        assert_eq!((rl.burst, rl.leak, rl.kod, rl.prefix6), (16, 3, true, 56));
        assert_eq!(s.access.allow.len(), 1);
        assert!(s.access.deny[0].contains("192.0.2.9".parse().unwrap()));
    }

    #[test]
    fn every_problem_reported_with_file_and_line() {
        let l = parse(
            "config server main\n option port 99999\n option prot 123\n list listen nope\n option ratelimit_burst 0\n option enabled maybe\n list port 5\n list allow 10.0.0.0/40\nconfig frob\n",
            "/etc/config/ntpgate",
        );
        assert!(l.config.is_none());
        let m = messages(&l);
        let expected = [
            "/etc/config/ntpgate:2: error: port: '99999' is not a whole number from 1 to 65535",
            "/etc/config/ntpgate:3: error: unknown option 'prot' in the server section",
            "/etc/config/ntpgate:4: error: listen: 'nope' is not an IPv4 or IPv6 address",
            "/etc/config/ntpgate:5: error: ratelimit_burst: '0' is not a whole number from 1 to 1024",
            "/etc/config/ntpgate:6: error: enabled: 'maybe' is not a boolean (use 1 or 0)",
            "/etc/config/ntpgate:7: error: 'port' takes one value: write 'option port', not 'list'",
            "/etc/config/ntpgate:8: error: allow: '40' is not a prefix length (0-32)",
            "/etc/config/ntpgate:9: error: unknown section type 'frob' (expected 'server' or 'pinhole')",
        ];
        for e in expected {
            assert!(m.iter().any(|x| x == e), "missing {e:?} in {m:#?}");
        }
    }

    #[test]
    fn syntax_errors_carry_the_file() {
        let l = parse("config server\n option port '123\n", "f.conf");
        assert_eq!(messages(&l), ["f.conf:2: error: unterminated ' quote"]);
    }

    #[test]
    fn warnings_do_not_refuse() {
        let l = parse(
            "config server\n option local_stratum 3\n option port 1\n option port 2\n list upstream time.example.net\n list deny 192.0.2.1/24\nconfig pinhole nas\n",
            "t",
        );
        let cfg = l.config.as_ref().expect("warnings only");
        assert_eq!(cfg.server.local_stratum, Some(3));
        assert_eq!(cfg.server.port, 2);
        let m = messages(&l);
        assert_eq!(m.len(), 5, "{m:#?}");
        assert!(m[0].starts_with("t:2: warning: local_stratum serves"));
        assert!(m[0].contains("pool server must never"));
        assert!(m[1].contains("t:4: warning: option 'port' set again (first on line 3)"));
        assert!(m[2].contains("t:5: warning: option 'upstream' is not used"));
        assert!(m[3].contains(
            "t:6: warning: deny: '192.0.2.1/24' has host bits set; it means 192.0.2.0/24"
        ));
        assert!(m[4].contains("t:7: warning: 'pinhole' sections are not supported"));
    }

    #[test]
    fn option_then_list_and_list_then_option() {
        let l = parse(
            "config server\n option listen ::1\n list listen 127.0.0.1\n",
            "t",
        );
        assert_eq!(l.config.unwrap().server.listen.len(), 2);
        let l = parse(
            "config server\n list listen ::1\n list listen ::2\n option listen 127.0.0.1\n",
            "t",
        );
        assert_eq!(
            l.config.unwrap().server.listen,
            ["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn named_sections_merge_and_a_second_section_is_an_error() {
        let l = parse(
            "config server main\n option port 5\nconfig server main\n option enabled 0\n",
            "t",
        );
        let s = l.config.unwrap().server;
        assert_eq!((s.port, s.enabled), (5, false));
        let l = parse("config server\nconfig server other\n", "t");
        assert_eq!(
            messages(&l),
            ["t:2: error: a second 'server' section; there is one (line 1)"]
        );
    }

    #[test]
    fn ratelimit_off() {
        let l = parse("config server\n option ratelimit 0\n", "t");
        assert_eq!(l.config.unwrap().server.access.ratelimit, None);
    }

    #[test]
    fn missing_file_names_it() {
        let l = load(Path::new("/nonexistent/ntpgate"));
        assert!(messages(&l)[0].starts_with("/nonexistent/ntpgate:0: error: cannot read:"));
    }
}
