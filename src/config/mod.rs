//! `/etc/config/ntpgate` -> a typed, validated [`Config`].
//!
//! Every problem found is reported with the file and line it comes from,
//! all at once, as errors (the config is refused) or warnings (it runs, but
//! someone should look). Nothing is silently ignored.

#![forbid(unsafe_code)]

mod diagnostics;
pub mod firewall;
mod lint;
pub mod network;
pub mod pinhole;
mod server;
pub mod uci;
mod values;

use std::path::Path;

pub use diagnostics::{Diagnostic, Severity};
pub use lint::{is_pool_name, smears_leap_seconds};
use network::Interfaces;
pub use server::{DEFAULT_UPSTREAMS, ServerConfig, SyncConfig, Upstream, parse_upstream};
use uci::{Section, UciFile};
// For the sections' own modules.
use diagnostics::Report;
use server::{LIST_OPTIONS, SINGLE_OPTIONS, server_config};
use values::{parse_bool, parse_range};

pub const DEFAULT_PATH: &str = "/etc/config/ntpgate";

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub pinholes: Vec<pinhole::Pinhole>,
    pub firewall: firewall::FirewallConfig,
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

/// Read and validate the file at `path`; pinhole interfaces are looked up
/// in the network config beside it.
pub fn load(path: &Path) -> Loaded {
    let file = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => parse(&text, &file, &Interfaces::beside(path)),
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
pub fn parse(text: &str, file: &str, interfaces: &Interfaces) -> Loaded {
    let mut report = Report {
        file,
        interfaces,
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

fn build(file: &UciFile, report: &mut Report<'_>) -> Config {
    let mut server_sections: Vec<&Section> = Vec::new();
    let mut firewall_sections: Vec<&Section> = Vec::new();
    let mut pinhole_sections: Vec<&Section> = Vec::new();
    for section in &file.sections {
        match section.kind.as_str() {
            "server" => server_sections.push(section),
            "firewall" => firewall_sections.push(section),
            "pinhole" => pinhole_sections.push(section),
            other => report.error(
                section.line,
                format!(
                    "unknown section type '{other}' (expected 'server', 'firewall' or 'pinhole')"
                ),
            ),
        }
    }
    let options = single_section(&server_sections, report);
    let server = server_config(&options, report);
    let options = single_section(&firewall_sections, report);
    Config {
        server,
        firewall: firewall::firewall(&options, report),
        pinholes: pinholes(&pinhole_sections, report),
    }
}

/// The options of a section there is one of. Sections with one name are
/// one section, as libuci merges them; another is an error.
fn single_section(sections: &[&Section], report: &mut Report<'_>) -> Vec<Resolved> {
    let mut options: Vec<&uci::UciOption> = Vec::new();
    if let Some((first, rest)) = sections.split_first() {
        options.extend(&first.options);
        for s in rest {
            if s.name.is_some() && s.name == first.name {
                options.extend(&s.options);
            } else {
                report.error(
                    s.line,
                    format!(
                        "a second '{}' section; there is one (line {})",
                        s.kind, first.line
                    ),
                );
            }
        }
    }
    resolve(&options, report)
}

fn pinholes(sections: &[&Section], report: &mut Report<'_>) -> Vec<pinhole::Pinhole> {
    let mut found: Vec<(pinhole::Pinhole, usize)> = Vec::new();
    for (n, section) in sections.iter().enumerate() {
        let options: Vec<&uci::UciOption> = section.options.iter().collect();
        for o in options.iter().filter(|o| o.is_list) {
            report.error(
                o.line,
                format!(
                    "'{}' takes one value: write 'option {}', not 'list'",
                    o.name, o.name
                ),
            );
        }
        let resolved = resolve(&options, report);
        let name = section
            .name
            .clone()
            .unwrap_or_else(|| format!("pinhole {}", n + 1));
        if let Some(p) = pinhole::pinhole(name, section.line, &resolved, report) {
            found.push((p, section.line));
        }
    }
    pinhole::check_duplicates(&found, report);
    found.into_iter().map(|(p, _)| p).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// A router with `lan` on br-lan and `guest` on br-guest.
    fn parse(text: &str, file: &str) -> Loaded {
        let network = Interfaces::parse(
            "config interface 'lan'\n\toption device 'br-lan'\nconfig interface 'guest'\n\toption device 'br-guest'\n",
            "/etc/config/network",
        );
        super::parse(text, file, &network)
    }

    fn messages(l: &Loaded) -> Vec<String> {
        l.diagnostics.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let l = parse("", "t");
        let server = l.config.unwrap().server;
        let hosts: Vec<&str> = server
            .sync
            .upstreams
            .iter()
            .map(|u| u.host.as_str())
            .collect();
        assert_eq!(hosts, DEFAULT_UPSTREAMS);
        assert_eq!(
            server,
            ServerConfig {
                sync: SyncConfig {
                    upstreams: server.sync.upstreams.clone(),
                    ..SyncConfig::default()
                },
                ..ServerConfig::default()
            }
        );
        assert!(l.diagnostics.is_empty());
    }

    #[test]
    fn listen_addresses_that_cannot_be_bound_together_are_errors() {
        for (second, wide) in [("0.0.0.0", "::"), ("192.0.2.1", "::"), ("::1", "::")] {
            let l = parse(
                &format!("config server\n\tlist listen '::'\n\tlist listen '{second}'\n"),
                "/etc/config/ntpgate",
            );
            assert!(l.config.is_none(), "'::' with '{second}'");
            assert_eq!(
                messages(&l),
                [format!(
                    "/etc/config/ntpgate:3: error: listen: '{wide}' already serves every IPv4 and IPv6 address on this port, so '{second}' cannot be bound beside it (line 2): list only '{wide}'"
                )]
            );
        }
        let l = parse(
            "config server\n\tlist listen '127.0.0.1'\n\tlist listen '0.0.0.0'\n",
            "t",
        );
        assert_eq!(
            messages(&l),
            [
                "t:3: error: listen: '0.0.0.0' already serves every IPv4 address on this port, so '127.0.0.1' cannot be bound beside it (line 2): list only '0.0.0.0'"
            ]
        );
        let l = parse(
            "config server\n\tlist listen '::1'\n\tlist listen '::1'\n",
            "t",
        );
        assert_eq!(
            messages(&l),
            ["t:3: error: listen: '::1' is listed twice (first on line 2)"]
        );
        // Beside 0.0.0.0 an IPv6 address can be bound (only 127.0.0.1 is
        // refused); specific addresses of both families can.
        let l = parse(
            "config server\n\tlist listen '0.0.0.0'\n\tlist listen '2001:db8::7'\n\tlist listen '127.0.0.1'\n",
            "t",
        );
        assert_eq!(messages(&l).len(), 1, "{:?}", messages(&l));
        let l = parse(
            "config server\n\tlist listen '192.0.2.1'\n\tlist listen '2001:db8::7'\n",
            "t",
        );
        assert!(l.diagnostics.is_empty());
        assert_eq!(l.config.unwrap().server.listen.len(), 2);
    }

    #[test]
    fn upstreams_and_their_lints() {
        let l = parse(
            "config server\n list upstream time.example.net\n list upstream '[2001:db8::1]:1123'\n list upstream 0.pool.ntp.org\n list upstream time.google.com\n list upstream 192.0.2.1:123\n list upstream 'bad host'\n list upstream 'x:0'\n option clock_control 0\n option min_sources 2\n option makestep 1\n option max_distance 0.5\n option driftfile /tmp/d\n",
            "t",
        );
        let m = messages(&l);
        assert_eq!(m.len(), 4, "{m:#?}");
        assert!(m[0].starts_with("t:4: warning: upstream: '0.pool.ntp.org' is a pool name"));
        assert!(m[1].starts_with("t:5: warning: upstream: 'time.google.com' smears leap seconds"));
        assert_eq!(
            m[2],
            "t:7: error: upstream: 'bad host' is not a host name or address"
        );
        assert!(m[3].starts_with("t:8: error: upstream: '0' in 'x:0' is not a port number"));
        let l = parse(
            "config server\n list upstream time.example.net\n list upstream '[2001:db8::1]:1123'\n list upstream 2001:db8::2\n list upstream 192.0.2.1:5\n option clock_control 0\n option min_sources 2\n option makestep 0\n option max_distance 0.5\n option driftfile ''\n",
            "t",
        );
        assert!(l.diagnostics.is_empty(), "{:?}", messages(&l));
        let sync = l.config.unwrap().server.sync;
        let shown: Vec<String> = sync.upstreams.iter().map(|u| u.to_string()).collect();
        assert_eq!(
            shown,
            [
                "time.example.net",
                "[2001:db8::1]:1123",
                "[2001:db8::2]:123",
                "192.0.2.1:5"
            ]
        );
        assert_eq!(
            (
                sync.clock_control,
                sync.min_sources,
                sync.makestep,
                sync.max_distance
            ),
            (false, 2, 0.0, 0.5)
        );
        let l = parse(
            "config server\n list upstream a\n list upstream b\n option driftfile rel/path\n",
            "t",
        );
        let m = messages(&l);
        assert!(m.iter().any(|x| x == "t:2: warning: 2 upstream(s): a pool server needs at least 4, so that one bad or lost upstream is outvoted"), "{m:#?}");
        assert!(
            m.iter()
                .any(|x| x == "t:4: error: driftfile: 'rel/path' is not an absolute path"),
            "{m:#?}"
        );
    }

    #[test]
    fn design_example_parses() {
        let l = parse(
            "config server 'main'\n\toption enabled '1'\n\tlist listen '::1'\n\tlist listen '127.0.0.1'\n\toption port '1123'\n\toption local_stratum ''\n\toption ratelimit '1'\n\toption ratelimit_interval '2'\n\toption ratelimit_burst '16'\n\toption ratelimit_leak '3'\n\toption ratelimit_kod '1'\n\toption ratelimit_prefix6 '56'\n\tlist allow '2001:db8::/32'\n\tlist deny '192.0.2.0/24'\n",
            "t",
        );
        assert!(l.diagnostics.is_empty(), "{:?}", messages(&l));
        let s = l.config.unwrap().server;
        assert_eq!(
            s.listen,
            [
                "::1".parse::<IpAddr>().unwrap(),
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
            "/etc/config/ntpgate:9: error: unknown section type 'frob' (expected 'server', 'firewall' or 'pinhole')",
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
            "config server\n option local_stratum 3\n option port 1\n option port 2\n list upstream time.example.net\n list deny 192.0.2.1/24\nconfig pinhole nas\n option suffix ::50\n",
            "t",
        );
        let cfg = l.config.as_ref().expect("warnings only");
        assert_eq!(cfg.server.local_stratum, Some(3));
        assert_eq!(cfg.server.port, 2);
        let m = messages(&l);
        assert_eq!(m.len(), 4, "{m:#?}");
        assert!(m[0].starts_with("t:2: warning: local_stratum serves"));
        assert!(m[0].contains("pool server must never"));
        assert!(m[1].contains("t:4: warning: option 'port' set again (first on line 3)"));
        assert!(
            m[2].contains("t:5: warning: min_sources 3 is more than the 1 upstream(s)"),
            "{m:#?}"
        );
        assert!(m[3].contains(
            "t:6: warning: deny: '192.0.2.1/24' has host bits set; it means 192.0.2.0/24"
        ));
    }

    #[test]
    fn pinholes_and_their_errors() {
        let l = parse(
            "config server\n option local_stratum 3\nconfig pinhole nas\n option suffix ::50\n option health_check 1\n option limit_pps 100\nconfig pinhole\n option mac 02:11:22:33:44:55\n option interface guest\nconfig pinhole fixed\n option address 2001:db8::123\n option enabled 0\n option device br-lan\n",
            "t",
        );
        let p = l.config.expect("valid").pinholes;
        assert_eq!(p.len(), 3);
        assert_eq!(
            (
                p[0].name.as_str(),
                p[0].interface.as_str(),
                p[0].health_check,
                p[0].limit_pps
            ),
            ("nas", "lan", true, Some(100))
        );
        assert_eq!(
            p[0].target,
            pinhole::Target::Suffix("::50".parse().unwrap())
        );
        assert_eq!(
            (p[1].name.as_str(), p[1].interface.as_str()),
            ("pinhole 2", "guest")
        );
        assert_eq!(
            p[1].target,
            pinhole::Target::Mac([2, 0x11, 0x22, 0x33, 0x44, 0x55])
        );
        assert_eq!((p[2].enabled, p[2].device.as_str()), (false, "br-lan"));

        let l = parse(
            "config server\n option local_stratum 3\nconfig pinhole a\n option suffix ::1:0:0:0:50\nconfig pinhole b\n option mac 02:11:22:33:44\nconfig pinhole c\nconfig pinhole d\n option suffix ::60\n option address 2001:db8::1\nconfig pinhole e\n option suffix ::60\nconfig pinhole f\n option address fd00::1\nconfig pinhole g\n option suffix ::70\n option colour red\n list suffix ::71\n",
            "t",
        );
        assert!(l.config.is_none());
        let m = messages(&l);
        let expected = [
            "t:4: error: pinhole 'a': suffix: '::1:0:0:0:50' is longer than the 64-bit host part of a LAN prefix",
            "t:6: error: pinhole 'b': mac: '02:11:22:33:44' is not a MAC address (six hex octets)",
            "t:7: error: pinhole 'c': needs one of suffix, mac or address",
            "t:10: error: pinhole 'd': give one of suffix, mac or address, not several",
            "t:14: error: pinhole 'f': address: 'fd00::1' is not a global IPv6 address (the WAN cannot reach it)",
            "t:17: error: pinhole 'g': unknown option 'colour'",
            "t:18: error: 'suffix' takes one value: write 'option suffix', not 'list'",
        ];
        for e in expected {
            assert!(m.iter().any(|x| x == e), "missing {e:?} in {m:#?}");
        }
        // d's suffix is ::60, and so is e's: but d is refused, so no clash;
        // two valid ones on one interface do clash.
        let l = parse(
            "config server\n option local_stratum 3\nconfig pinhole x\n option suffix ::60\nconfig pinhole y\n option suffix ::60\n",
            "t",
        );
        assert!(
            messages(&l).contains(
                &"t:5: error: pinhole 'y' claims the same host as pinhole 'x' (suffix ::60)"
                    .to_string()
            ),
            "{:?}",
            messages(&l)
        );
    }

    #[test]
    fn pinhole_interfaces_come_from_the_network_config() {
        let l = parse(
            "config server\n option local_stratum 3\nconfig pinhole a\n option suffix ::50\n option interface wlan\nconfig pinhole b\n option suffix ::51\n option interface guest\n",
            "t",
        );
        assert_eq!(
            messages(&l)[1..],
            ["t:5: error: pinhole 'a': unknown interface 'wlan' (not in /etc/config/network)"]
        );
        let text = "config server\n option local_stratum 3\nconfig pinhole a\n option suffix ::50\nconfig pinhole b\n option suffix ::51\n option device eth1\n";
        let none = Interfaces::Unavailable {
            why: "cannot read /etc/config/network: No such file".into(),
        };
        let l = super::parse(text, "t", &none);
        assert_eq!(
            messages(&l)[1..],
            [
                "t:3: error: pinhole 'a': cannot tell the device of interface 'lan' (cannot read /etc/config/network: No such file); set option device"
            ]
        );
        // Two names for one device still claim the same host.
        let l = parse(
            "config server\n option local_stratum 3\nconfig pinhole a\n option suffix ::50\nconfig pinhole b\n option suffix ::50\n option device br-lan\n",
            "t",
        );
        assert!(
            messages(&l)[1].contains("claims the same host"),
            "{:?}",
            messages(&l)
        );
    }

    #[test]
    fn firewall_section() {
        let l = parse(
            "config server\n option local_stratum 3\nconfig firewall\n option family ip6\n option table filter\n option create 1\n option forward_chain fwd\n",
            "t",
        );
        let fw = l.config.expect("valid").firewall;
        assert_eq!(
            (
                fw.family,
                fw.table.as_str(),
                fw.create,
                fw.forward_chain.as_str(),
                fw.input_chain.as_str()
            ),
            (firewall::Family::Ip6, "filter", true, "fwd", "input")
        );
        assert_eq!(fw.lan_set, "ntpgate_lan6");
        let l = parse(
            "config server\n option local_stratum 3\nconfig firewall\n option family ip\n option table '1x'\n option input_chain in\n list lan_set a\n option colour red\nconfig firewall\n",
            "t",
        );
        assert_eq!(
            messages(&l)[1..],
            [
                "t:4: error: firewall: family: 'ip' is not inet or ip6",
                "t:5: error: firewall: table: '1x' is not an nftables name",
                "t:6: warning: firewall: forward_chain and input_chain are only used with create '1'",
                "t:7: error: 'lan_set' takes one value: write 'option lan_set', not 'list'",
                "t:8: error: unknown option 'colour' in the firewall section",
                "t:9: error: a second 'firewall' section; there is one (line 3)",
            ]
        );
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
