//! The `config firewall` section: where the pinholes live in nftables.
//!
//! With fw4 (OpenWrt 22.03 and later) nothing needs setting: the package's
//! include files declare the sets and the chain in `table inet fw4`. On a
//! system without fw4, name an existing table and turn `create` on: the
//! daemon then adds its sets, its chain and its rules to that table, and
//! takes them away again on a clean stop.
//!
//! The names of our sets and chain are checked here against what fw4
//! renders into its table (its chains, those of every zone), and against
//! each other; whether an object of that name already exists, and whose,
//! the daemon finds out from nft when it starts.

use std::collections::HashMap;

use super::{Report, Resolved, parse_bool};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Inet,
    Ip6,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Ip6 => "ip6",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallConfig {
    pub family: Family,
    pub table: String,
    /// LAN hosts open on UDP 123 (type ipv6_addr, with timeouts).
    pub lan_set: String,
    /// The router's own open ports (type inet_service, with timeouts).
    pub router_set: String,
    /// The chain the per-source rate limits go in; its rules are ours.
    pub limit_chain: String,
    /// The dynamic set the rate limits keep their per-source state in.
    pub limit_set: String,
    /// Add the sets, the chain and the rules to `table` ourselves.
    pub create: bool,
    /// With `create`: the filter chains (hooked on forward and input) our
    /// accept rules go at the top of.
    pub forward_chain: String,
    pub input_chain: String,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            family: Family::Inet,
            table: "fw4".into(),
            lan_set: "ntpgate_lan6".into(),
            router_set: "ntpgate_router".into(),
            limit_chain: "ntpgate_limit".into(),
            limit_set: "ntpgate_flood".into(),
            create: false,
            forward_chain: "forward".into(),
            input_chain: "input".into(),
        }
    }
}

/// nftables identifiers: a letter, then letters, digits, `_` (and `.`, `-`,
/// which nft accepts unquoted as well), at most 255 bytes.
fn identifier(v: &str) -> Result<String, String> {
    let mut bytes = v.bytes();
    let ok = v.len() < 256
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!("'{v}' is not an nftables name"))
    }
}

/// The chains fw4 renders into `table inet fw4` (firewall4's
/// `templates/ruleset.uc`; shared/fixtures/fw4/default.nft shows them for
/// OpenWrt's default config)...
const FW4_CHAINS: &[&str] = &[
    "input",
    "forward",
    "output",
    "prerouting",
    "handle_reject",
    "syn_flood",
    "dstnat",
    "srcnat",
    "raw_prerouting",
    "raw_output",
    "mangle_prerouting",
    "mangle_postrouting",
    "mangle_input",
    "mangle_output",
    "mangle_forward",
];

/// ...and those it renders for each zone, named after the zone
/// (`input_lan`, `accept_to_wan`, `dstnat_guest`, ...).
const FW4_ZONE_CHAIN_PREFIXES: &[&str] = &[
    "input_",
    "output_",
    "forward_",
    "helper_",
    "accept_from_",
    "accept_to_",
    "reject_from_",
    "reject_to_",
    "drop_from_",
    "drop_to_",
    "dstnat_",
    "srcnat_",
    "notrack_",
];

/// Is `name` a chain fw4 renders, or may render for a zone?
pub fn fw4_chain(name: &str) -> bool {
    FW4_CHAINS.contains(&name) || FW4_ZONE_CHAIN_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The names that would collide with fw4's own chains, or with each other.
fn check_names(fw: &FirewallConfig, lines: &HashMap<&str, usize>, report: &mut Report<'_>) {
    let line = |option: &str| lines.get(option).copied().unwrap_or(0);
    let fw4_table = fw.family == Family::Inet && fw.table == "fw4";
    if fw4_table && fw4_chain(&fw.limit_chain) {
        report.error(
            line("limit_chain"),
            format!(
                "firewall: limit_chain: '{}' is one of fw4's own chains in table inet fw4; ntpgate needs a chain of its own (the include files declare 'ntpgate_limit')",
                fw.limit_chain
            ),
        );
    }
    if fw.create && [&fw.forward_chain, &fw.input_chain].contains(&&fw.limit_chain) {
        report.error(
            line("limit_chain"),
            format!(
                "firewall: limit_chain: '{}' is also forward_chain or input_chain; the limit chain is ntpgate's own",
                fw.limit_chain
            ),
        );
    }
    let sets = [
        ("lan_set", &fw.lan_set),
        ("router_set", &fw.router_set),
        ("limit_set", &fw.limit_set),
    ];
    for (i, (option, name)) in sets.iter().enumerate() {
        if let Some((other, _)) = sets[..i].iter().find(|(_, n)| n == name) {
            report.error(
                line(option),
                format!(
                    "firewall: {option}: '{name}' is also {other}; each set needs its own name"
                ),
            );
        }
    }
    // With fw4 the include files declare the objects under the default
    // names, and their rules use those: another name is a set or chain of
    // the user's own making.
    if fw4_table && !fw.create {
        let defaults = FirewallConfig::default();
        for (option, name, default) in [
            ("lan_set", &fw.lan_set, &defaults.lan_set),
            ("router_set", &fw.router_set, &defaults.router_set),
            ("limit_set", &fw.limit_set, &defaults.limit_set),
            ("limit_chain", &fw.limit_chain, &defaults.limit_chain),
        ] {
            if name != default && !(option == "limit_chain" && fw4_chain(name)) {
                report.warning(
                    line(option),
                    format!(
                        "firewall: {option}: the fw4 include files declare and use '{default}'; '{name}' must be declared, with a comment starting \"ntpgate-managed\", and used by rules of your own"
                    ),
                );
            }
        }
    }
}

pub(super) fn firewall(options: &[Resolved], report: &mut Report<'_>) -> FirewallConfig {
    let mut fw = FirewallConfig::default();
    let mut chains_at = None;
    let mut create_at = 0;
    let mut lines = HashMap::new();
    for opt in options {
        let (value, line) = (opt.values[0].0.as_str(), opt.values[0].1);
        let name = opt.name.as_str();
        lines.insert(name, line);
        if opt.is_list {
            report.error(
                line,
                format!("'{name}' takes one value: write 'option {name}', not 'list'"),
            );
            continue;
        }
        let parsed = match name {
            "family" => match value {
                "inet" => Ok(Family::Inet),
                "ip6" => Ok(Family::Ip6),
                _ => Err(format!("'{value}' is not inet or ip6")),
            }
            .map(|f| fw.family = f),
            "create" => {
                create_at = line;
                parse_bool(value).map(|v| fw.create = v)
            }
            "table" => identifier(value).map(|v| fw.table = v),
            "lan_set" => identifier(value).map(|v| fw.lan_set = v),
            "router_set" => identifier(value).map(|v| fw.router_set = v),
            "limit_chain" => identifier(value).map(|v| fw.limit_chain = v),
            "limit_set" => identifier(value).map(|v| fw.limit_set = v),
            "forward_chain" | "input_chain" => {
                chains_at.get_or_insert(line);
                identifier(value).map(|v| {
                    if name == "forward_chain" {
                        fw.forward_chain = v
                    } else {
                        fw.input_chain = v
                    }
                })
            }
            other => {
                report.error(
                    line,
                    format!("unknown option '{other}' in the firewall section"),
                );
                continue;
            }
        };
        if let Err(why) = parsed {
            report.error(line, format!("firewall: {name}: {why}"));
        }
    }
    if let Some(line) = chains_at.filter(|_| !fw.create) {
        report.warning(
            line,
            "firewall: forward_chain and input_chain are only used with create '1'".into(),
        );
    }
    if fw.create && fw.table == "fw4" {
        report.warning(
            create_at,
            "firewall: create '1' in fw4's table: fw4 removes what ntpgate adds on every reload; use the package's include files instead".into(),
        );
    }
    check_names(&fw, &lines, report);
    fw
}

#[cfg(test)]
mod tests {
    use crate::config::network::Interfaces;

    fn diagnostics(firewall: &str) -> Vec<String> {
        let text = format!("config server\n option local_stratum 3\nconfig firewall\n{firewall}");
        let none = Interfaces::Unavailable { why: "none".into() };
        crate::config::parse(&text, "t", &none)
            .diagnostics
            .iter()
            .map(|d| d.to_string())
            .filter(|d| d.contains("firewall"))
            .collect()
    }

    #[test]
    fn fw4s_own_chains_are_refused_with_their_line() {
        for chain in [
            "input",
            "forward",
            "srcnat",
            "mangle_forward",
            "input_wan",
            "accept_to_guest",
        ] {
            assert_eq!(
                diagnostics(&format!(" option limit_chain '{chain}'\n")),
                [format!(
                    "t:4: error: firewall: limit_chain: '{chain}' is one of fw4's own chains in table inet fw4; ntpgate needs a chain of its own (the include files declare 'ntpgate_limit')"
                )]
            );
        }
        // In a table of the user's, fw4's names are theirs to use; whether
        // such a chain exists is found out at start.
        assert!(
            diagnostics(" option family ip6\n option table filter\n option create 1\n option limit_chain input_limits\n").is_empty()
        );
    }

    #[test]
    fn names_that_collide_with_each_other_are_refused() {
        assert_eq!(
            diagnostics(
                " option table filter\n option create 1\n option lan_set a\n option router_set a\n option limit_set a\n option limit_chain input\n"
            ),
            [
                "t:7: error: firewall: router_set: 'a' is also lan_set; each set needs its own name",
                "t:8: error: firewall: limit_set: 'a' is also lan_set; each set needs its own name",
                "t:9: error: firewall: limit_chain: 'input' is also forward_chain or input_chain; the limit chain is ntpgate's own",
            ]
        );
    }

    #[test]
    fn with_fw4_other_names_are_a_warning() {
        assert_eq!(
            diagnostics(" option lan_set my_hosts\n"),
            [
                "t:4: warning: firewall: lan_set: the fw4 include files declare and use 'ntpgate_lan6'; 'my_hosts' must be declared, with a comment starting \"ntpgate-managed\", and used by rules of your own"
            ]
        );
        assert!(diagnostics(" option lan_set ntpgate_lan6\n").is_empty());
    }
}
