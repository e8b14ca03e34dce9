//! nftables commands that change our things (pure): set elements, the
//! per-source limit rules, and in `create` mode the sets, chain and rules
//! fw4's include files would otherwise declare.
//!
//! Every element carries a timeout and is refreshed well before it ends
//! (deleted and added again in the same batch), so holes close by
//! themselves when the daemon is gone. The per-element counters restart
//! with each refresh; the reconciler keeps the running totals.

use std::borrow::Cow;

use nftables::expr::{Elem, Expression, NamedExpression};
use nftables::schema::{Element, NfCmd, NfListObject};
use nftables::types::NfFamily;
use serde_json::{Value, json};

use super::listing::{
    ACCEPT_COMMENT, JUMP_COMMENT, LAN_SET_TYPE, LIMIT_COMMENT, LIMIT_SET_TYPE, MARK, OurRule,
    ROUTER_COMMENT, ROUTER_SET_TYPE,
};
use super::plan::Limit;
use crate::config::firewall::{Family, FirewallConfig};

/// The comments of the sets and the chain, as the include files write them.
const LAN_SET_COMMENT: &str = "ntpgate-managed: LAN NTP servers open to the WAN";
const ROUTER_SET_COMMENT: &str = "ntpgate-managed: the router's NTP server, open to the WAN";
const LIMIT_SET_COMMENT: &str = "ntpgate-managed: per-source NTP rate limits";
const LIMIT_CHAIN_COMMENT: &str = "ntpgate-managed: the per-source NTP rate limits";
/// Seconds a source's rate-limit state lives after its last packet.
const LIMIT_STATE_TIMEOUT: u32 = 60;
const LIMIT_STATE_SIZE: u32 = 65535;

/// How an object is named in the log: `set inet fw4 ntpgate_lan6`.
pub fn object(fw: &FirewallConfig, kind: &str, name: &str) -> String {
    format!("{kind} {} {} {name}", fw.family.as_str(), fw.table)
}

/// nft commands: `text` ones (nft's own language: what its JSON cannot say)
/// run first, as one atomic batch; then the `json` ones, as another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commands {
    pub text: Vec<String>,
    pub json: Vec<Value>,
}

impl Commands {
    pub fn is_empty(&self) -> bool {
        self.json.is_empty() && self.text.is_empty()
    }

    pub fn to_json(&self) -> String {
        json!({ "nftables": self.json }).to_string()
    }
}

fn family(fw: &FirewallConfig) -> NfFamily {
    match fw.family {
        Family::Inet => NfFamily::INet,
        Family::Ip6 => NfFamily::IP6,
    }
}

fn command(cmd: NfCmd<'_>) -> Value {
    serde_json::to_value(cmd).expect("nft commands serialize")
}

/// Add elements (with a timeout and our comment) to a set, or delete them.
pub fn elements_command(
    fw: &FirewallConfig,
    verb: &str,
    set: &str,
    values: Vec<Value>,
    timeout: u32,
) -> Value {
    let adding = verb == "add";
    let elem: Vec<Expression<'_>> = values
        .into_iter()
        .map(|val| {
            let val = match val {
                Value::Number(n) => Expression::Number(n.as_u64().unwrap_or_default() as u32),
                other => Expression::String(Cow::Owned(other.as_str().unwrap_or_default().into())),
            };
            if adding {
                Expression::Named(NamedExpression::Elem(Elem {
                    val: Box::new(val),
                    timeout: Some(timeout),
                    expires: None,
                    comment: Some(Cow::Borrowed(MARK)),
                    counter: None,
                }))
            } else {
                val
            }
        })
        .collect();
    let element = NfListObject::Element(Element {
        family: family(fw),
        table: Cow::Borrowed(&fw.table),
        name: Cow::Borrowed(set),
        elem: Cow::Owned(elem),
    });
    let mut command = command(if adding {
        NfCmd::Add(element)
    } else {
        NfCmd::Delete(element)
    });
    drop_unset_element_fields(&mut command);
    command
}

/// The nftables crate writes an element's unset fields as `null`. Debian's
/// nft 1.0.6 reads them as absent; whether every nft release does (a
/// `"counter"` key asks for a per-element counter) is not ours to bet
/// on: send only what is set.
fn drop_unset_element_fields(command: &mut Value) {
    let elems = command
        .as_object_mut()
        .and_then(|c| c.values_mut().next())
        .and_then(|v| v.get_mut("element"))
        .and_then(|e| e.get_mut("elem"))
        .and_then(Value::as_array_mut);
    for elem in elems.into_iter().flatten() {
        if let Some(fields) = elem.get_mut("elem").and_then(Value::as_object_mut) {
            fields.retain(|_, v| !v.is_null());
        }
    }
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({ "payload": { "protocol": protocol, "field": field } })
}

fn matches(left: Value, right: Value) -> Value {
    json!({ "match": { "op": "==", "left": left, "right": right } })
}

/// Drop a WAN source's packets to `limit.address` above `limit.pps`: its
/// state lives in the limit set, one entry per source and hole.
pub fn add_limit_rule(fw: &FirewallConfig, limit: &Limit) -> Value {
    let key = json!({ "concat": [payload("ip6", "saddr"), payload("ip6", "daddr")] });
    let over =
        json!({ "limit": { "rate": limit.pps, "burst": limit.pps, "per": "second", "inv": true } });
    json!({ "add": { "rule": {
        "family": fw.family.as_str(), "table": fw.table, "chain": fw.limit_chain,
        "comment": format!("{LIMIT_COMMENT} {} {}", limit.address, limit.pps),
        "expr": [
            matches(payload("ip6", "daddr"), json!(limit.address.to_string())),
            { "set": { "op": "update", "elem": key, "set": format!("@{}", fw.limit_set), "stmt": [over] } },
            { "counter": null },
            { "drop": null },
        ],
    } } })
}

/// Empty a set of ours (the rate limits' state, at a stop).
pub fn flush_set(fw: &FirewallConfig, set: &str) -> Value {
    json!({ "flush": { "set": {
        "family": fw.family.as_str(), "table": fw.table, "name": set,
    } } })
}

/// Delete a rule by the handle it was listed with.
pub fn delete_rule(fw: &FirewallConfig, chain: &str, handle: u64) -> Value {
    json!({ "delete": { "rule": {
        "family": fw.family.as_str(), "table": fw.table, "chain": chain, "handle": handle,
    } } })
}

fn text_delete_rule(fw: &FirewallConfig, chain: &str, handle: u64) -> String {
    format!(
        "delete rule {} {} {chain} handle {handle}",
        fw.family.as_str(),
        fw.table
    )
}

/// What `create` mode adds when it is missing, in nft's language (its
/// JSON in nft 1.0.6 drops the comments of sets and chains, and cannot
/// make a set `dynamic`).
pub fn create_set(fw: &FirewallConfig, name: &str) -> String {
    let (family, table) = (fw.family.as_str(), &fw.table);
    if name == fw.limit_set {
        format!(
            "add set {family} {table} {name} {{ type {LIMIT_SET_TYPE}; flags dynamic, timeout; timeout {LIMIT_STATE_TIMEOUT}s; size {LIMIT_STATE_SIZE}; comment \"{LIMIT_SET_COMMENT}\"; }}"
        )
    } else {
        let (kind, comment) = if name == fw.lan_set {
            (LAN_SET_TYPE, LAN_SET_COMMENT)
        } else {
            (ROUTER_SET_TYPE, ROUTER_SET_COMMENT)
        };
        format!(
            "add set {family} {table} {name} {{ type {kind}; flags timeout; counter; comment \"{comment}\"; }}"
        )
    }
}

pub fn create_chain(fw: &FirewallConfig) -> String {
    format!(
        "add chain {} {} {} {{ comment \"{LIMIT_CHAIN_COMMENT}\"; }}",
        fw.family.as_str(),
        fw.table,
        fw.limit_chain
    )
}

/// `create` mode: our rules at the top of the user's forward and input
/// chains. The jump to our limit chain goes above the accept, so when
/// either is missing both are put back in that order (`stale`: the one
/// that is left, deleted first).
pub fn create_forward_rules(fw: &FirewallConfig, stale: &[&OurRule]) -> Vec<String> {
    let (family, table, chain) = (fw.family.as_str(), &fw.table, &fw.forward_chain);
    let mut out: Vec<String> = stale
        .iter()
        .map(|r| text_delete_rule(fw, &r.chain, r.handle))
        .collect();
    // Each insert goes to the top: the accept first, then the jump above it.
    out.push(format!(
        "insert rule {family} {table} {chain} udp dport 123 ip6 daddr @{} counter accept comment \"{ACCEPT_COMMENT}\"",
        fw.lan_set
    ));
    out.push(format!(
        "insert rule {family} {table} {chain} udp dport 123 jump {} comment \"{JUMP_COMMENT}\"",
        fw.limit_chain
    ));
    out
}

pub fn create_input_rule(fw: &FirewallConfig) -> String {
    format!(
        "insert rule {} {} {} udp dport @{} counter accept comment \"{ROUTER_COMMENT}\"",
        fw.family.as_str(),
        fw.table,
        fw.input_chain,
        fw.router_set
    )
}

/// A clean stop in `create` mode: delete an object we added.
pub fn delete_object(fw: &FirewallConfig, kind: &str, name: &str) -> String {
    format!("delete {}", object(fw, kind, name))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn builds_what_nft_reads() {
        let fw = FirewallConfig::default();
        assert_eq!(
            elements_command(&fw, "add", "ntpgate_lan6", vec![json!("2001:db8::2")], 60)
                .to_string(),
            r#"{"add":{"element":{"elem":[{"elem":{"comment":"ntpgate-managed","timeout":60,"val":"2001:db8::2"}}],"family":"inet","name":"ntpgate_lan6","table":"fw4"}}}"#
        );
        assert_eq!(
            elements_command(&fw, "delete", "ntpgate_router", vec![json!(123)], 0).to_string(),
            r#"{"delete":{"element":{"elem":[123],"family":"inet","name":"ntpgate_router","table":"fw4"}}}"#
        );
        let limit = Limit {
            address: ip("2001:db8::2"),
            pps: 50,
        };
        assert_eq!(
            add_limit_rule(&fw, &limit).to_string(),
            r#"{"add":{"rule":{"chain":"ntpgate_limit","comment":"ntpgate-managed: limit 2001:db8::2 50","expr":[{"match":{"left":{"payload":{"field":"daddr","protocol":"ip6"}},"op":"==","right":"2001:db8::2"}},{"set":{"elem":{"concat":[{"payload":{"field":"saddr","protocol":"ip6"}},{"payload":{"field":"daddr","protocol":"ip6"}}]},"op":"update","set":"@ntpgate_flood","stmt":[{"limit":{"burst":50,"inv":true,"per":"second","rate":50}}]}},{"counter":null},{"drop":null}],"family":"inet","table":"fw4"}}}"#
        );
        assert_eq!(
            delete_rule(&fw, "ntpgate_limit", 9).to_string(),
            r#"{"delete":{"rule":{"chain":"ntpgate_limit","family":"inet","handle":9,"table":"fw4"}}}"#
        );
        let plain = FirewallConfig {
            family: crate::config::firewall::Family::Ip6,
            table: "filter".into(),
            create: true,
            ..FirewallConfig::default()
        };
        assert_eq!(
            create_set(&plain, "ntpgate_flood"),
            "add set ip6 filter ntpgate_flood { type ipv6_addr . ipv6_addr; flags dynamic, timeout; timeout 60s; size 65535; comment \"ntpgate-managed: per-source NTP rate limits\"; }"
        );
        assert_eq!(
            create_set(&plain, "ntpgate_lan6"),
            "add set ip6 filter ntpgate_lan6 { type ipv6_addr; flags timeout; counter; comment \"ntpgate-managed: LAN NTP servers open to the WAN\"; }"
        );
        assert_eq!(
            create_chain(&plain),
            "add chain ip6 filter ntpgate_limit { comment \"ntpgate-managed: the per-source NTP rate limits\"; }"
        );
        assert_eq!(
            create_input_rule(&plain),
            "insert rule ip6 filter input udp dport @ntpgate_router counter accept comment \"ntpgate-managed: the router's NTP server\""
        );
    }
}
