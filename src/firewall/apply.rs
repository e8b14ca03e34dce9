//! Make nftables match the plan: read our sets and chains with `nft -j
//! list`, write one atomic batch (`nft -j -f -`). Only our own objects are
//! touched: the elements of our sets, the rules of our chain, and, in
//! `create` mode, the sets, chain and rules we added ourselves.
//!
//! Every element carries a timeout and is refreshed well before it ends
//! (deleted and added again in the same batch), so holes close by
//! themselves when the daemon is gone. The per-element counters restart
//! with each refresh; the firewall shell keeps the running totals.
//!
//! Commands are built with the `nftables` crate where its schema reaches;
//! the rules with a stateful `update @set { ... limit }` statement and sets
//! with per-element counters are beyond its schema (0.6) and are written as
//! nft's JSON directly.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv6Addr;

use nftables::expr::{Elem, Expression, NamedExpression};
use nftables::schema::{Chain, Element, FlushObject, NfCmd, NfListObject, Rule, Set};
use nftables::types::NfFamily;
use serde_json::{Value, json};

use super::plan::Limit;
use crate::config::firewall::{Family, FirewallConfig};

/// The comments that mark our rules in chains that are not ours.
const JUMP_COMMENT: &str = "ntpgate: NTP rate limits";
const ACCEPT_COMMENT: &str = "ntpgate: NTP pinholes";
const ROUTER_COMMENT: &str = "ntpgate: the router's NTP server";
/// A rate-limit rule says what it limits in its comment, so the rules read
/// back compare with the plan.
const LIMIT_COMMENT: &str = "ntpgate: limit";
/// Seconds a source's rate-limit state lives after its last packet.
const LIMIT_STATE_TIMEOUT: u32 = 60;
const LIMIT_STATE_SIZE: u32 = 65535;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// One of our rules in someone else's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OurRule {
    pub chain: String,
    pub handle: u64,
    pub comment: String,
}

/// What is in nftables now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Current {
    pub lan: BTreeMap<Ipv6Addr, Counters>,
    pub router: BTreeSet<u16>,
    /// The rate-limit rules, with what they dropped.
    pub limits: BTreeMap<Limit, Counters>,
    /// `create` mode: our rules in the forward and input chains.
    pub rules: Vec<OurRule>,
}

/// The result of reading: what is there, and which of our objects are not
/// (after an fw4 restart, before the firewall is up, or never created).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub current: Current,
    pub missing: Vec<String>,
}

/// What the plan wants in nftables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub lan: BTreeSet<Ipv6Addr>,
    pub router: BTreeSet<u16>,
    pub limits: BTreeSet<Limit>,
}

#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn objects(json: &str) -> Result<Vec<Value>, Error> {
    let mut v: Value = serde_json::from_str(json).map_err(|e| Error(format!("nft output: {e}")))?;
    // `get_mut`, not indexing: indexing a JSON value that is not an object
    // for writing panics.
    match v.get_mut("nftables").map(Value::take) {
        Some(Value::Array(a)) => Ok(a),
        _ => Err(Error("nft output without \"nftables\"".into())),
    }
}

fn counters(v: &Value) -> Counters {
    Counters {
        packets: v["packets"].as_u64().unwrap_or(0),
        bytes: v["bytes"].as_u64().unwrap_or(0),
    }
}

/// Parse `nft -j list set` output: the elements and their counters.
pub fn parse_set(json: &str) -> Result<Vec<(String, Counters)>, Error> {
    let mut out = Vec::new();
    for set in objects(json)?.iter().filter_map(|o| o.get("set")) {
        for e in set["elem"].as_array().into_iter().flatten() {
            let (val, counter) = match e.get("elem") {
                Some(elem) => (&elem["val"], &elem["counter"]),
                None => (e, &Value::Null),
            };
            let text = match val {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => return Err(Error(format!("unexpected set element {other}"))),
            };
            out.push((text, counters(counter)));
        }
    }
    Ok(out)
}

/// Parse `nft -j list chain` output: the rules whose comment starts with
/// "ntpgate:", with their handles and counters.
pub fn parse_rules(json: &str) -> Result<Vec<(OurRule, Counters)>, Error> {
    let mut out = Vec::new();
    for rule in objects(json)?.iter().filter_map(|o| o.get("rule")) {
        let Some(comment) = rule["comment"]
            .as_str()
            .filter(|c| c.starts_with("ntpgate:"))
        else {
            continue;
        };
        let counted = rule["expr"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|s| s.get("counter"))
            .map(counters)
            .unwrap_or_default();
        out.push((
            OurRule {
                chain: rule["chain"].as_str().unwrap_or_default().to_string(),
                handle: rule["handle"]
                    .as_u64()
                    .ok_or_else(|| Error(format!("rule without a handle: {rule}")))?,
                comment: comment.to_string(),
            },
            counted,
        ));
    }
    Ok(out)
}

/// `ntpgate: limit 2001:db8::50 100` -> the limit.
fn parse_limit(comment: &str) -> Option<Limit> {
    let mut words = comment.strip_prefix(LIMIT_COMMENT)?.split_whitespace();
    let limit = Limit {
        address: words.next()?.parse().ok()?,
        pps: words.next()?.parse().ok()?,
    };
    words.next().is_none().then_some(limit)
}

/// `nft -j list <what>`; `None` when it does not exist.
async fn list(fw: &FirewallConfig, what: &str, name: &str) -> Result<Option<String>, Error> {
    let out = tokio::process::Command::new("nft")
        .args(["-j", "list", what, fw.family.as_str(), &fw.table, name])
        .output()
        .await
        .map_err(|e| Error(format!("cannot run nft: {e}")))?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let message = String::from_utf8_lossy(&out.stderr);
    if message.contains("No such file or directory") {
        return Ok(None);
    }
    Err(Error(format!(
        "nft list {what} {} {} {name}: {}",
        fw.family.as_str(),
        fw.table,
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    )))
}

/// How an object of ours is named in [`Found::missing`]: `set inet fw4
/// ntpgate_lan6`, `chain ...`, or `rule "<comment>"`.
fn object(fw: &FirewallConfig, kind: &str, name: &str) -> String {
    if kind == "rule" {
        format!("rule \"{name}\"")
    } else {
        format!("{kind} {} {} {name}", fw.family.as_str(), fw.table)
    }
}

/// Read our sets and chain, and in `create` mode our rules.
pub async fn read(fw: &FirewallConfig) -> Result<Found, Error> {
    let mut found = Found::default();
    let cur = &mut found.current;
    match list(fw, "set", &fw.lan_set).await? {
        Some(json) => {
            cur.lan = parse_set(&json)?
                .into_iter()
                .filter_map(|(a, c)| a.parse::<Ipv6Addr>().ok().map(|a| (a, c)))
                .collect();
        }
        None => found.missing.push(object(fw, "set", &fw.lan_set)),
    }
    match list(fw, "set", &fw.router_set).await? {
        Some(json) => {
            cur.router = parse_set(&json)?
                .into_iter()
                .filter_map(|(p, _)| p.parse().ok())
                .collect();
        }
        None => found.missing.push(object(fw, "set", &fw.router_set)),
    }
    match list(fw, "chain", &fw.limit_chain).await? {
        Some(json) => {
            cur.limits = parse_rules(&json)?
                .into_iter()
                .filter_map(|(r, c)| Some((parse_limit(&r.comment)?, c)))
                .collect();
        }
        None => found.missing.push(object(fw, "chain", &fw.limit_chain)),
    }
    if fw.create {
        if list(fw, "set", &fw.limit_set).await?.is_none() {
            found.missing.push(object(fw, "set", &fw.limit_set));
        }
        for chain in [&fw.forward_chain, &fw.input_chain] {
            if let Some(json) = list(fw, "chain", chain).await? {
                cur.rules
                    .extend(parse_rules(&json)?.into_iter().map(|(r, _)| r));
            }
        }
        for comment in [JUMP_COMMENT, ACCEPT_COMMENT, ROUTER_COMMENT] {
            if !cur.rules.iter().any(|r| r.comment == comment) {
                found.missing.push(object(fw, "rule", comment));
            }
        }
    }
    Ok(found)
}

fn family(fw: &FirewallConfig) -> NfFamily {
    match fw.family {
        Family::Inet => NfFamily::INet,
        Family::Ip6 => NfFamily::IP6,
    }
}

/// A batch of nft commands, applied atomically; `text` commands, which
/// nft's JSON cannot say, go in a batch of their own just before.
#[derive(Debug, Default)]
pub struct Commands(Vec<Value>, Vec<String>);

impl Commands {
    fn cmd(&mut self, cmd: NfCmd<'_>) {
        self.0
            .push(serde_json::to_value(cmd).expect("nft commands serialize"));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty() && self.1.is_empty()
    }

    pub fn to_json(&self) -> String {
        json!({ "nftables": self.0 }).to_string()
    }
}

fn element<'a>(
    fw: &'a FirewallConfig,
    set: &'a str,
    val: Value,
    timeout: Option<u32>,
) -> NfListObject<'a> {
    let val = match val {
        Value::Number(n) => Expression::Number(n.as_u64().unwrap_or_default() as u32),
        other => Expression::String(Cow::Owned(other.as_str().unwrap_or_default().to_string())),
    };
    let elem = match timeout {
        Some(t) => Expression::Named(NamedExpression::Elem(Elem {
            val: Box::new(val),
            timeout: Some(t),
            expires: None,
            comment: None,
            counter: None,
        })),
        None => val,
    };
    NfListObject::Element(Element {
        family: family(fw),
        table: Cow::Borrowed(&fw.table),
        name: Cow::Borrowed(set),
        elem: Cow::Owned(vec![elem]),
    })
}

fn chain(fw: &FirewallConfig) -> NfListObject<'_> {
    NfListObject::Chain(Chain {
        family: family(fw),
        table: Cow::Borrowed(&fw.table),
        name: Cow::Borrowed(&fw.limit_chain),
        ..Chain::default()
    })
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({ "payload": { "protocol": protocol, "field": field } })
}

fn matches(left: Value, right: Value) -> Value {
    json!({ "match": { "op": "==", "left": left, "right": right } })
}

/// `verb` (add or insert) a rule with our `comment`.
fn rule(fw: &FirewallConfig, verb: &str, chain: &str, comment: &str, expr: Vec<Value>) -> Value {
    json!({ verb: { "rule": {
        "family": fw.family.as_str(), "table": fw.table, "chain": chain,
        "comment": comment, "expr": expr,
    } } })
}

/// Drop a WAN source's packets to `limit.address` above `limit.pps`: its
/// state lives in the limit set, one entry per source and hole.
fn limit_rule(fw: &FirewallConfig, limit: &Limit) -> Value {
    let key = json!({ "concat": [payload("ip6", "saddr"), payload("ip6", "daddr")] });
    let over =
        json!({ "limit": { "rate": limit.pps, "burst": limit.pps, "per": "second", "inv": true } });
    rule(
        fw,
        "add",
        &fw.limit_chain,
        &format!("{LIMIT_COMMENT} {} {}", limit.address, limit.pps),
        vec![
            matches(payload("ip6", "daddr"), json!(limit.address.to_string())),
            json!({ "set": { "op": "update", "elem": key, "set": format!("@{}", fw.limit_set), "stmt": [over] } }),
            json!({ "counter": null }),
            json!({ "drop": null }),
        ],
    )
}

/// The batch that turns `current` into `desired`, refreshing the timeout
/// of every element that stays.
pub fn batch(fw: &FirewallConfig, current: &Current, desired: &Desired, timeout: u32) -> Commands {
    let mut c = Commands::default();
    for a in current.lan.keys() {
        c.cmd(NfCmd::Delete(element(
            fw,
            &fw.lan_set,
            json!(a.to_string()),
            None,
        )));
    }
    for p in &current.router {
        c.cmd(NfCmd::Delete(element(fw, &fw.router_set, json!(p), None)));
    }
    for a in &desired.lan {
        c.cmd(NfCmd::Add(element(
            fw,
            &fw.lan_set,
            json!(a.to_string()),
            Some(timeout),
        )));
    }
    for p in &desired.router {
        c.cmd(NfCmd::Add(element(
            fw,
            &fw.router_set,
            json!(p),
            Some(timeout),
        )));
    }
    if current.limits.keys().ne(desired.limits.iter()) {
        c.cmd(NfCmd::Flush(FlushObject::Chain(match chain(fw) {
            NfListObject::Chain(ch) => ch,
            _ => unreachable!(),
        })));
        for l in &desired.limits {
            c.0.push(limit_rule(fw, l));
        }
    }
    c
}

/// `create` mode: add whatever of our sets, chain and rules is missing.
/// The forward chain gets the jump to our limit chain above the accept
/// rule, so when either is missing both are put back in that order.
pub fn create(fw: &FirewallConfig, current: &Current, missing: &[String]) -> Commands {
    let family_name = fw.family.as_str();
    let lacks = |kind: &str, name: &str| missing.contains(&object(fw, kind, name));
    let mut c = Commands::default();
    let set = |name: &str, kind: Value, flags: Value, extra: Value| {
        let mut s = json!({
            "family": family_name, "table": fw.table, "name": name,
            "type": kind, "flags": flags, "comment": "ntpgate",
        });
        if let (Value::Object(s), Value::Object(extra)) = (&mut s, extra) {
            s.extend(extra);
        }
        json!({ "add": { "set": s } })
    };
    let counted = json!({ "stmt": [{ "counter": null }] });
    if lacks("set", &fw.lan_set) {
        c.0.push(set(
            &fw.lan_set,
            json!("ipv6_addr"),
            json!(["timeout"]),
            counted.clone(),
        ));
    }
    if lacks("set", &fw.router_set) {
        c.0.push(set(
            &fw.router_set,
            json!("inet_service"),
            json!(["timeout"]),
            counted,
        ));
    }
    if lacks("set", &fw.limit_set) {
        // A set that rules update from the packet path must be created
        // `dynamic`, a flag nft's JSON parser learnt only after 1.0.6.
        c.1.push(format!(
            "add set {family_name} {} {} {{ type ipv6_addr . ipv6_addr; flags dynamic, timeout; timeout {LIMIT_STATE_TIMEOUT}s; size {LIMIT_STATE_SIZE}; comment \"ntpgate\"; }}",
            fw.table, fw.limit_set
        ));
    }
    if lacks("chain", &fw.limit_chain) {
        c.cmd(NfCmd::Add(chain(fw)));
    }
    let ntp = || matches(payload("udp", "dport"), json!(123));
    let rule_missing = |comment: &str| lacks("rule", comment);
    if rule_missing(JUMP_COMMENT) || rule_missing(ACCEPT_COMMENT) {
        for r in current
            .rules
            .iter()
            .filter(|r| r.comment == JUMP_COMMENT || r.comment == ACCEPT_COMMENT)
        {
            c.cmd(delete_rule(fw, r));
        }
        // Each insert goes to the top: the accept first, then the jump above it.
        c.0.push(rule(
            fw,
            "insert",
            &fw.forward_chain,
            ACCEPT_COMMENT,
            vec![
                ntp(),
                matches(payload("ip6", "daddr"), json!(format!("@{}", fw.lan_set))),
                json!({ "counter": null }),
                json!({ "accept": null }),
            ],
        ));
        c.0.push(rule(
            fw,
            "insert",
            &fw.forward_chain,
            JUMP_COMMENT,
            vec![ntp(), json!({ "jump": { "target": fw.limit_chain } })],
        ));
    }
    if rule_missing(ROUTER_COMMENT) {
        c.0.push(rule(
            fw,
            "insert",
            &fw.input_chain,
            ROUTER_COMMENT,
            vec![
                matches(
                    payload("udp", "dport"),
                    json!(format!("@{}", fw.router_set)),
                ),
                json!({ "counter": null }),
                json!({ "accept": null }),
            ],
        ));
    }
    c
}

fn delete_rule<'a>(fw: &'a FirewallConfig, r: &'a OurRule) -> NfCmd<'a> {
    NfCmd::Delete(NfListObject::Rule(Rule {
        family: family(fw),
        table: Cow::Borrowed(&fw.table),
        chain: Cow::Borrowed(&r.chain),
        handle: Some(r.handle as u32),
        ..Rule::default()
    }))
}

/// A clean stop: close every hole now. With fw4 our elements and limit
/// rules go; in `create` mode everything we added goes.
pub fn remove(fw: &FirewallConfig, found: &Found) -> Commands {
    let has = |kind: &str, name: &str| !found.missing.contains(&object(fw, kind, name));
    let mut c = batch(fw, &found.current, &Desired::default(), 0);
    if !fw.create {
        return c;
    }
    for r in &found.current.rules {
        c.cmd(delete_rule(fw, r));
    }
    if has("chain", &fw.limit_chain) {
        c.cmd(NfCmd::Delete(chain(fw)));
    }
    for set in [&fw.lan_set, &fw.router_set, &fw.limit_set] {
        if has("set", set) {
            c.cmd(NfCmd::Delete(NfListObject::Set(Box::new(Set {
                family: family(fw),
                table: Cow::Borrowed(&fw.table),
                name: Cow::Borrowed(set),
                ..Set::default()
            }))));
        }
    }
    c
}

/// Apply a batch atomically; nft's own message on failure.
pub async fn apply(commands: &Commands) -> Result<(), Error> {
    if !commands.1.is_empty() {
        nft(&["-f", "-"], commands.1.join("\n")).await?;
    }
    if !commands.0.is_empty() {
        nft(&["-j", "-f", "-"], commands.to_json()).await?;
    }
    Ok(())
}

/// Run nft with `input` on its stdin.
async fn nft(args: &[&str], input: String) -> Result<(), Error> {
    use tokio::io::AsyncWriteExt;
    let mut nft = tokio::process::Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error(format!("cannot run nft: {e}")))?;
    let mut stdin = nft.stdin.take().expect("piped stdin");
    let written = stdin.write_all(input.as_bytes()).await;
    drop(stdin);
    let out = nft
        .wait_with_output()
        .await
        .map_err(|e| Error(format!("nft: {e}")))?;
    written.map_err(|e| Error(format!("nft: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let message = String::from_utf8_lossy(&out.stderr);
    Err(Error(format!(
        "nft refused the batch: {}",
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_nft_lists() {
        // nft 1.0.6, `nft -j list set inet fw4 ntpgate_lan6`.
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "ntpgate_lan6", "table": "fw4", "type": "ipv6_addr", "handle": 40, "comment": "ntpgate", "flags": ["timeout"], "elem": [{"elem": {"val": "2001:db8::50", "timeout": 60, "expires": 59, "counter": {"packets": 3, "bytes": 288}}}], "stmt": [{"counter": null}]}}]}"#;
        assert_eq!(
            parse_set(json).unwrap(),
            [(
                "2001:db8::50".to_string(),
                Counters {
                    packets: 3,
                    bytes: 288
                }
            )]
        );
        let empty = r#"{"nftables": [{"metainfo": {}}, {"set": {"family": "inet", "name": "ntpgate_router", "table": "fw4", "type": "inet_service", "flags": ["timeout"]}}]}"#;
        assert!(parse_set(empty).unwrap().is_empty());
        let plain = r#"{"nftables": [{"set": {"elem": [123]}}]}"#;
        assert_eq!(parse_set(plain).unwrap()[0].0, "123");
        assert!(parse_set("not json").is_err());
    }

    #[test]
    fn json_that_is_not_an_object_is_an_error() {
        // The fuzz target's first crash (fuzz/seeds/nft/crash-string).
        for text in [r#""version""#, "[1]", "7", "null", r#"{"nftables": 1}"#] {
            assert!(parse_set(text).is_err(), "{text}");
            assert!(parse_rules(text).is_err(), "{text}");
        }
    }

    #[test]
    fn parses_our_rules_and_limits() {
        // nft 1.0.6, `nft -j list chain inet fw4 ntpgate_limit`.
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"chain": {"family": "inet", "table": "fw4", "name": "ntpgate_limit", "handle": 1}}, {"rule": {"family": "inet", "table": "fw4", "chain": "ntpgate_limit", "handle": 3, "comment": "ntpgate: limit 2001:db8::50 10", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": "2001:db8::50"}}, {"set": {"op": "update", "elem": {"concat": [{"payload": {"protocol": "ip6", "field": "saddr"}}, {"payload": {"protocol": "ip6", "field": "daddr"}}]}, "set": "@ntpgate_flood", "stmt": [{"limit": {"rate": 10, "burst": 10, "per": "second", "inv": true}}]}}, {"counter": {"packets": 7, "bytes": 532}}, {"drop": null}]}}, {"rule": {"family": "inet", "table": "fw4", "chain": "ntpgate_limit", "handle": 4, "expr": [{"accept": null}]}}]}"#;
        let rules = parse_rules(json).unwrap();
        assert_eq!(rules.len(), 1, "only rules with our comment");
        let (rule, counted) = &rules[0];
        assert_eq!((rule.chain.as_str(), rule.handle), ("ntpgate_limit", 3));
        assert_eq!(counted.packets, 7);
        assert_eq!(
            parse_limit(&rule.comment),
            Some(Limit {
                address: "2001:db8::50".parse().unwrap(),
                pps: 10
            })
        );
        assert_eq!(parse_limit("ntpgate: limit 2001:db8::50"), None);
        assert_eq!(parse_limit("ntpgate: limit 2001:db8::50 10 x"), None);
        assert!(parse_rules(r#"{"nftables": [{"rule": {"comment": "ntpgate: x"}}]}"#).is_err());
    }

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn batch_refreshes_adds_and_removes_only_our_elements() {
        let fw = FirewallConfig::default();
        let limit = Limit {
            address: ip("2001:db8::2"),
            pps: 50,
        };
        let current = Current {
            lan: BTreeMap::from([(ip("2001:db8::1"), Counters::default())]),
            ..Current::default()
        };
        let desired = Desired {
            lan: [ip("2001:db8::2")].into(),
            router: [123].into(),
            limits: [limit].into(),
        };
        let json = batch(&fw, &current, &desired, 60).to_json();
        assert_eq!(
            json,
            r#"{"nftables":[{"delete":{"element":{"elem":["2001:db8::1"],"family":"inet","name":"ntpgate_lan6","table":"fw4"}}},{"add":{"element":{"elem":[{"elem":{"comment":null,"counter":null,"expires":null,"timeout":60,"val":"2001:db8::2"}}],"family":"inet","name":"ntpgate_lan6","table":"fw4"}}},{"add":{"element":{"elem":[{"elem":{"comment":null,"counter":null,"expires":null,"timeout":60,"val":123}}],"family":"inet","name":"ntpgate_router","table":"fw4"}}},{"flush":{"chain":{"family":"inet","name":"ntpgate_limit","table":"fw4"}}},{"add":{"rule":{"chain":"ntpgate_limit","comment":"ntpgate: limit 2001:db8::2 50","expr":[{"match":{"left":{"payload":{"field":"daddr","protocol":"ip6"}},"op":"==","right":"2001:db8::2"}},{"set":{"elem":{"concat":[{"payload":{"field":"saddr","protocol":"ip6"}},{"payload":{"field":"daddr","protocol":"ip6"}}]},"op":"update","set":"@ntpgate_flood","stmt":[{"limit":{"burst":50,"inv":true,"per":"second","rate":50}}]}},{"counter":null},{"drop":null}],"family":"inet","table":"fw4"}}}]}"#
        );
        // Limits in place: only the elements are refreshed.
        let current = Current {
            limits: BTreeMap::from([(limit, Counters::default())]),
            ..current
        };
        assert!(
            !batch(&fw, &current, &desired, 60)
                .to_json()
                .contains("limit")
        );
    }

    fn verbs(c: &Commands) -> Vec<String> {
        c.0.iter()
            .map(|v| {
                let (verb, body) = v.as_object().unwrap().iter().next().unwrap();
                let (kind, o) = body.as_object().unwrap().iter().next().unwrap();
                let name = o["comment"]
                    .as_str()
                    .filter(|_| kind == "rule")
                    .or(o["name"].as_str())
                    .or(o["handle"].as_u64().map(|_| "by handle"))
                    .unwrap_or_default();
                format!("{verb} {kind} {name}")
            })
            .collect()
    }

    #[test]
    fn create_mode_adds_what_is_missing_and_removes_all_it_added() {
        let fw = FirewallConfig {
            table: "filter".into(),
            create: true,
            ..FirewallConfig::default()
        };
        let everything: Vec<String> = [
            "set inet filter ntpgate_lan6",
            "set inet filter ntpgate_router",
            "chain inet filter ntpgate_limit",
            "set inet filter ntpgate_flood",
            "rule \"ntpgate: NTP rate limits\"",
            "rule \"ntpgate: NTP pinholes\"",
            "rule \"ntpgate: the router's NTP server\"",
        ]
        .map(String::from)
        .into();
        let all = create(&fw, &Current::default(), &everything);
        assert_eq!(
            all.1,
            [
                "add set inet filter ntpgate_flood { type ipv6_addr . ipv6_addr; flags dynamic, timeout; timeout 60s; size 65535; comment \"ntpgate\"; }"
            ]
        );
        assert_eq!(
            verbs(&all),
            [
                "add set ntpgate_lan6",
                "add set ntpgate_router",
                "add chain ntpgate_limit",
                "insert rule ntpgate: NTP pinholes",
                "insert rule ntpgate: NTP rate limits",
                "insert rule ntpgate: the router's NTP server",
            ]
        );
        // The jump went: the accept that is left goes too, so that the
        // jump is put back above it.
        let accept = OurRule {
            chain: "forward".into(),
            handle: 9,
            comment: ACCEPT_COMMENT.into(),
        };
        let current = Current {
            rules: vec![accept.clone()],
            ..Current::default()
        };
        assert_eq!(
            verbs(&create(&fw, &current, &everything[4..5])),
            [
                "delete rule by handle",
                "insert rule ntpgate: NTP pinholes",
                "insert rule ntpgate: NTP rate limits",
            ]
        );
        let found = Found {
            current: Current {
                lan: BTreeMap::from([(ip("2001:db8::1"), Counters::default())]),
                rules: vec![accept],
                ..Current::default()
            },
            missing: Vec::new(),
        };
        assert_eq!(
            verbs(&remove(&fw, &found)),
            [
                "delete element ntpgate_lan6",
                "delete rule by handle",
                "delete chain ntpgate_limit",
                "delete set ntpgate_lan6",
                "delete set ntpgate_router",
                "delete set ntpgate_flood",
            ]
        );
        // With fw4 the include files' objects stay: only elements go.
        let fw4 = FirewallConfig::default();
        assert_eq!(
            verbs(&remove(&fw4, &found)),
            ["delete element ntpgate_lan6"]
        );
    }
}
