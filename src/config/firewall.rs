//! The `config firewall` section: where the pinholes live in nftables.
//!
//! With fw4 (OpenWrt 22.03 and later) nothing needs setting: the package's
//! include files declare the sets and the chain in `table inet fw4`. On a
//! system without fw4, name an existing table and turn `create` on: the
//! daemon then adds its sets, its chain and its rules to that table, and
//! takes them away again on a clean stop.

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

pub(super) fn firewall(options: &[Resolved], report: &mut Report<'_>) -> FirewallConfig {
    let mut fw = FirewallConfig::default();
    let mut chains_at = None;
    let mut create_at = 0;
    for opt in options {
        let (value, line) = (opt.values[0].0.as_str(), opt.values[0].1);
        let name = opt.name.as_str();
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
    fw
}
