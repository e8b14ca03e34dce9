//! nftables, what `nft -j list` prints, parsed (pure), with whose each
//! thing is. [`super::commands`] builds the commands that change our
//! things, [`super::run`] runs nft, [`super::reconcile`] decides what to
//! change.
//!
//! Whose a thing is: the daemon writes only to sets, chains, rules and set
//! elements whose comment starts with [`MARK`]. The package's include
//! files give it to the sets and the chain they declare; the daemon gives
//! it to everything it adds. Everything else in the table is the user's or
//! fw4's, whatever its name or comment (`ntpgate: ...` included), and is
//! never flushed, replaced or deleted. No chain is ever flushed: rules go
//! one by one, by the handle they were listed with.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use super::plan::Limit;

/// The start of every comment the daemon and its include files write, and
/// of no other: what makes an object, a rule or an element ours.
pub const MARK: &str = "ntpgate-managed";

/// Our rules in the user's chains (`create` mode); the include files
/// write the same comments.
pub const JUMP_COMMENT: &str = "ntpgate-managed: NTP rate limits";
pub const ACCEPT_COMMENT: &str = "ntpgate-managed: NTP pinholes";
pub const ROUTER_COMMENT: &str = "ntpgate-managed: the router's NTP server";
/// A rate-limit rule says what it limits in its comment, so the rules read
/// back compare with the plan.
pub const LIMIT_COMMENT: &str = "ntpgate-managed: limit";

/// The set types, as nft lists them.
pub const LAN_SET_TYPE: &str = "ipv6_addr";
pub const ROUTER_SET_TYPE: &str = "inet_service";
pub const LIMIT_SET_TYPE: &str = "ipv6_addr . ipv6_addr";

/// Does this comment mark a thing as ours?
pub fn marked(comment: &str) -> bool {
    comment
        .strip_prefix(MARK)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

impl std::ops::Add for Counters {
    type Output = Counters;
    fn add(self, c: Counters) -> Counters {
        Counters {
            packets: self.packets + c.packets,
            bytes: self.bytes + c.bytes,
        }
    }
}

#[derive(Debug)]
pub struct Error(pub String);

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

/// A set as `nft -j list set` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetListing {
    pub comment: Option<String>,
    /// `ipv6_addr`, or `ipv6_addr . ipv6_addr` for a concatenation.
    pub kind: String,
    pub flags: Vec<String>,
    pub elements: Vec<ElementListing>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElementListing {
    pub value: String,
    pub counters: Counters,
    /// It carries our comment.
    pub ours: bool,
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parse `nft -j list set` output (`-t` leaves the elements out).
pub fn parse_set(json: &str) -> Result<SetListing, Error> {
    let objects = objects(json)?;
    let set = objects
        .iter()
        .find_map(|o| o.get("set"))
        .ok_or_else(|| Error("nft listed no set".into()))?;
    let kind = match &set["type"] {
        Value::Array(parts) => parts
            .iter()
            .map(|p| p.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(|parts| parts.join(" . ")),
        other => other.as_str().map(str::to_string),
    }
    .ok_or_else(|| Error(format!("set without a type: {set}")))?;
    let flags = match &set["flags"] {
        Value::Array(a) => a.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect(),
    };
    let mut elements = Vec::new();
    for e in set["elem"].as_array().into_iter().flatten() {
        let (val, counter, comment) = match e.get("elem") {
            Some(elem) => (&elem["val"], &elem["counter"], &elem["comment"]),
            None => (e, &Value::Null, &Value::Null),
        };
        let value = match val.get("concat") {
            Some(Value::Array(parts)) => parts
                .iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .map(|parts| parts.join(" . ")),
            _ => scalar(val),
        }
        .ok_or_else(|| Error(format!("unexpected set element {val}")))?;
        elements.push(ElementListing {
            value,
            counters: counters(counter),
            ours: comment.as_str().is_some_and(marked),
        });
    }
    Ok(SetListing {
        comment: set["comment"].as_str().map(str::to_string),
        kind,
        flags,
        elements,
    })
}

/// A chain as `nft -j list chain` shows it (nft 1.0.6 leaves its comment
/// out: see [`parse_chain_comment`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainListing {
    pub handle: u64,
    /// Hooked into the packet path (input, forward, ...): a base chain.
    pub hook: Option<String>,
    pub rules: Vec<RuleListing>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleListing {
    pub handle: u64,
    pub comment: Option<String>,
    pub counters: Counters,
}

/// Parse `nft -j list chain` output.
pub fn parse_chain(json: &str) -> Result<ChainListing, Error> {
    let objects = objects(json)?;
    let chain = objects
        .iter()
        .find_map(|o| o.get("chain"))
        .ok_or_else(|| Error("nft listed no chain".into()))?;
    let mut listing = ChainListing {
        handle: chain["handle"]
            .as_u64()
            .ok_or_else(|| Error(format!("chain without a handle: {chain}")))?,
        hook: chain["hook"].as_str().map(str::to_string),
        rules: Vec::new(),
    };
    for rule in objects.iter().filter_map(|o| o.get("rule")) {
        listing.rules.push(RuleListing {
            handle: rule["handle"]
                .as_u64()
                .ok_or_else(|| Error(format!("rule without a handle: {rule}")))?,
            comment: rule["comment"].as_str().map(str::to_string),
            counters: rule["expr"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|s| s.get("counter"))
                .map(counters)
                .unwrap_or_default(),
        });
    }
    Ok(listing)
}

/// The comment of chain `name` in `nft list chain` text output: the line
/// after `chain NAME {`, where nft prints it before the hook and the rules.
pub fn parse_chain_comment(text: &str, name: &str) -> Option<String> {
    let header = format!("chain {name} {{");
    let mut lines = text.lines().map(str::trim);
    lines.find(|l| *l == header)?;
    let quoted = lines
        .next()?
        .strip_prefix("comment \"")?
        .strip_suffix('"')?;
    Some(quoted.to_string())
}

/// What one of our objects turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen<T> {
    Missing,
    Ours(T),
    /// It exists and is not ours, or not of the kind we need: why.
    Foreign(String),
}

impl<T> Seen<T> {
    pub fn ours(&self) -> Option<&T> {
        match self {
            Seen::Ours(t) => Some(t),
            _ => None,
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Seen<U> {
        match self {
            Seen::Missing => Seen::Missing,
            Seen::Ours(t) => Seen::Ours(f(t)),
            Seen::Foreign(why) => Seen::Foreign(why),
        }
    }
}

fn not_ours(comment: Option<&str>) -> String {
    match comment {
        Some(c) => format!("is not ntpgate's (its comment \"{c}\" does not start with \"{MARK}\")"),
        None => format!("is not ntpgate's (it has no comment starting with \"{MARK}\")"),
    }
}

/// Whose a set is: ours when it carries our comment and is of the type,
/// with timeouts, that we need.
pub fn judge_set(listing: SetListing, kind: &str) -> Seen<SetListing> {
    match listing.comment.as_deref() {
        Some(c) if marked(c) => {
            if listing.kind == kind && listing.flags.iter().any(|f| f == "timeout") {
                Seen::Ours(listing)
            } else {
                Seen::Foreign(format!(
                    "is of type {} with flags [{}], not {kind} with timeouts",
                    listing.kind,
                    listing.flags.join(", ")
                ))
            }
        }
        other => Seen::Foreign(not_ours(other)),
    }
}

/// Whose a chain is: ours when it is a regular chain (no hook) with our
/// comment.
pub fn judge_chain(listing: ChainListing, comment: Option<&str>) -> Seen<ChainListing> {
    if let Some(hook) = &listing.hook {
        return Seen::Foreign(format!("is a base chain (hook {hook})"));
    }
    match comment {
        Some(c) if marked(c) => Seen::Ours(listing),
        other => Seen::Foreign(not_ours(other)),
    }
}

/// The elements of one of our sets: ours with their counters, and the
/// values held by elements someone else added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elements<T: Ord> {
    pub ours: BTreeMap<T, Counters>,
    pub foreign: BTreeSet<T>,
}

impl<T: Ord> Default for Elements<T> {
    fn default() -> Self {
        Elements {
            ours: BTreeMap::new(),
            foreign: BTreeSet::new(),
        }
    }
}

pub fn elements<T: FromStr + Ord>(listing: &SetListing) -> Elements<T> {
    let mut out = Elements::default();
    for e in &listing.elements {
        let Ok(value) = e.value.parse() else {
            continue;
        };
        if e.ours {
            out.ours.insert(value, e.counters);
        } else {
            out.foreign.insert(value);
        }
    }
    out
}

/// One of our rate-limit rules in our limit chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitRule {
    pub handle: u64,
    /// What its comment says it limits (`None`: a rule of ours this
    /// version does not write, to be deleted).
    pub limit: Option<Limit>,
    pub counters: Counters,
}

/// The rules of our limit chain: ours, and how many are not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitRules {
    pub rules: Vec<LimitRule>,
    pub foreign: usize,
}

pub fn limit_rules(listing: &ChainListing) -> LimitRules {
    let mut out = LimitRules::default();
    for r in &listing.rules {
        match r.comment.as_deref().filter(|c| marked(c)) {
            Some(c) => out.rules.push(LimitRule {
                handle: r.handle,
                limit: parse_limit(c),
                counters: r.counters,
            }),
            None => out.foreign += 1,
        }
    }
    out
}

/// One of our rules in the user's chains (`create` mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OurRule {
    pub chain: String,
    pub handle: u64,
    pub comment: String,
}

/// The rules of ours in a chain of the user's.
pub fn our_rules(listing: &ChainListing, chain: &str) -> Vec<OurRule> {
    listing
        .rules
        .iter()
        .filter_map(|r| {
            let comment = r.comment.as_deref().filter(|c| marked(c))?;
            Some(OurRule {
                chain: chain.to_string(),
                handle: r.handle,
                comment: comment.to_string(),
            })
        })
        .collect()
}

/// `ntpgate-managed: limit 2001:db8::50 100` -> the limit.
fn parse_limit(comment: &str) -> Option<Limit> {
    let mut words = comment.strip_prefix(LIMIT_COMMENT)?.split_whitespace();
    let limit = Limit {
        address: words.next()?.parse().ok()?,
        pps: words.next()?.parse().ok()?,
    };
    words.next().is_none().then_some(limit)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_what_nft_lists() {
        // nft 1.0.6, `nft -j list set inet fw4 ntpgate_lan6`: one element
        // of ours, one someone else added.
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "ntpgate_lan6", "table": "fw4", "type": "ipv6_addr", "handle": 40, "comment": "ntpgate-managed: LAN NTP servers open to the WAN", "flags": ["timeout"], "elem": [{"elem": {"val": "2001:db8::50", "timeout": 60, "expires": 59, "comment": "ntpgate-managed", "counter": {"packets": 3, "bytes": 288}}}, {"elem": {"val": "2001:db8::99", "timeout": 3600, "expires": 3599, "counter": {"packets": 0, "bytes": 0}}}], "stmt": [{"counter": null}]}}]}"#;
        let listing = parse_set(json).unwrap();
        assert_eq!(
            listing.comment.as_deref(),
            Some("ntpgate-managed: LAN NTP servers open to the WAN")
        );
        assert_eq!(
            (listing.kind.as_str(), listing.flags.as_slice()),
            ("ipv6_addr", ["timeout".to_string()].as_slice())
        );
        let set = judge_set(listing, LAN_SET_TYPE);
        let found = elements::<Ipv6Addr>(set.ours().expect("ours"));
        assert_eq!(
            found.ours,
            BTreeMap::from([(
                ip("2001:db8::50"),
                Counters {
                    packets: 3,
                    bytes: 288
                }
            )])
        );
        assert_eq!(found.foreign, BTreeSet::from([ip("2001:db8::99")]));
        // `nft -t -j list set` of the flood set: its type, no elements.
        let terse = r#"{"nftables": [{"metainfo": {}}, {"set": {"family": "inet", "name": "ntpgate_flood", "table": "fw4", "type": ["ipv6_addr", "ipv6_addr"], "handle": 4, "comment": "ntpgate-managed: per-source NTP rate limits", "size": 65535, "flags": ["timeout"], "timeout": 60}}]}"#;
        assert!(matches!(
            judge_set(parse_set(terse).unwrap(), LIMIT_SET_TYPE),
            Seen::Ours(_)
        ));
        let plain = r#"{"nftables": [{"set": {"type": "inet_service", "elem": [123]}}]}"#;
        assert_eq!(parse_set(plain).unwrap().elements[0].value, "123");
        assert!(parse_set("not json").is_err());
        assert!(parse_set(r#"{"nftables": [{"set": {"elem": [1]}}]}"#).is_err());
    }

    #[test]
    fn sets_without_our_comment_or_of_another_type_are_not_ours() {
        let set = |comment: Option<&str>, kind: &str, flags: &[&str]| SetListing {
            comment: comment.map(str::to_string),
            kind: kind.into(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            elements: Vec::new(),
        };
        let users = judge_set(set(None, "ipv6_addr", &["timeout"]), LAN_SET_TYPE);
        assert_eq!(
            users,
            Seen::Foreign(
                "is not ntpgate's (it has no comment starting with \"ntpgate-managed\")".into()
            )
        );
        // A comment the user may well write is not ours.
        assert!(matches!(
            judge_set(
                set(Some("ntpgate: my hosts"), "ipv6_addr", &["timeout"]),
                LAN_SET_TYPE
            ),
            Seen::Foreign(_)
        ));
        assert!(matches!(
            judge_set(
                set(Some("ntpgate-managedx"), "ipv6_addr", &["timeout"]),
                LAN_SET_TYPE
            ),
            Seen::Foreign(_)
        ));
        assert_eq!(
            judge_set(
                set(Some("ntpgate-managed: x"), "ipv4_addr", &["interval"]),
                LAN_SET_TYPE
            ),
            Seen::Foreign(
                "is of type ipv4_addr with flags [interval], not ipv6_addr with timeouts".into()
            )
        );
        assert!(matches!(
            judge_set(
                set(Some("ntpgate-managed"), "inet_service", &["timeout"]),
                ROUTER_SET_TYPE
            ),
            Seen::Ours(_)
        ));
    }

    #[test]
    fn json_that_is_not_an_object_is_an_error() {
        // The fuzz target's first crash (fuzz/seeds/nft/crash-string).
        for text in [r#""version""#, "[1]", "7", "null", r#"{"nftables": 1}"#] {
            assert!(parse_set(text).is_err(), "{text}");
            assert!(parse_chain(text).is_err(), "{text}");
        }
    }

    #[test]
    fn parses_chains_their_comments_and_our_rules() {
        // nft 1.0.6, `nft -j list chain inet fw4 ntpgate_limit`: one limit
        // rule of ours, one rule of the user's with a comment much like ours.
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"chain": {"family": "inet", "table": "fw4", "name": "ntpgate_limit", "handle": 1}}, {"rule": {"family": "inet", "table": "fw4", "chain": "ntpgate_limit", "handle": 3, "comment": "ntpgate-managed: limit 2001:db8::50 10", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": "2001:db8::50"}}, {"set": {"op": "update", "elem": {"concat": [{"payload": {"protocol": "ip6", "field": "saddr"}}, {"payload": {"protocol": "ip6", "field": "daddr"}}]}, "set": "@ntpgate_flood", "stmt": [{"limit": {"rate": 10, "burst": 10, "per": "second", "inv": true}}]}}, {"counter": {"packets": 7, "bytes": 532}}, {"drop": null}]}}, {"rule": {"family": "inet", "table": "fw4", "chain": "ntpgate_limit", "handle": 4, "comment": "ntpgate: limit 2001:db8::51 10", "expr": [{"accept": null}]}}]}"#;
        let chain = parse_chain(json).unwrap();
        assert_eq!((chain.handle, chain.hook.as_deref()), (1, None));
        let limits = limit_rules(&chain);
        assert_eq!(limits.foreign, 1, "only rules with our comment");
        assert_eq!(
            limits.rules,
            [LimitRule {
                handle: 3,
                limit: Some(Limit {
                    address: ip("2001:db8::50"),
                    pps: 10
                }),
                counters: Counters {
                    packets: 7,
                    bytes: 532
                }
            }]
        );
        assert_eq!(parse_limit("ntpgate-managed: limit 2001:db8::50"), None);
        assert_eq!(
            parse_limit("ntpgate-managed: limit 2001:db8::50 10 x"),
            None
        );
        assert!(parse_chain(r#"{"nftables": [{"chain": {"name": "x"}}]}"#).is_err());
        assert!(
            parse_chain(r#"{"nftables": [{"chain": {"handle": 1}}, {"rule": {"comment": "x"}}]}"#)
                .is_err()
        );

        // `nft list chain inet fw4 ntpgate_limit`, text: the comment.
        let text = "table inet fw4 {\n\tchain ntpgate_limit {\n\t\tcomment \"ntpgate-managed: the per-source NTP rate limits\"\n\t\tip6 daddr 2001:db8::50 drop comment \"x\"\n\t}\n}\n";
        let comment = parse_chain_comment(text, "ntpgate_limit");
        assert_eq!(
            comment.as_deref(),
            Some("ntpgate-managed: the per-source NTP rate limits")
        );
        assert!(matches!(
            judge_chain(chain.clone(), comment.as_deref()),
            Seen::Ours(_)
        ));
        let bare = "table inet fw4 {\n\tchain ntpgate_limit {\n\t\tip6 daddr 2001:db8::50 drop comment \"ntpgate-managed: x\"\n\t}\n}\n";
        assert_eq!(parse_chain_comment(bare, "ntpgate_limit"), None);
        assert!(matches!(judge_chain(chain, None), Seen::Foreign(_)));
        // fw4's input chain: a base chain is never ours, whatever its comment.
        let input = parse_chain(r#"{"nftables": [{"chain": {"family": "inet", "table": "fw4", "name": "input", "handle": 2, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}]}"#).unwrap();
        assert_eq!(
            judge_chain(input, Some("ntpgate-managed")),
            Seen::Foreign("is a base chain (hook input)".into())
        );
    }

    #[test]
    fn our_rules_are_those_with_our_mark() {
        let chain = ChainListing {
            handle: 1,
            hook: Some("forward".into()),
            rules: [
                (5, Some(ACCEPT_COMMENT)),
                (6, Some("ntpgate: NTP pinholes")),
                (7, None),
                (8, Some("ntpgate-managed: NTP rate limits")),
            ]
            .map(|(handle, comment)| RuleListing {
                handle,
                comment: comment.map(str::to_string),
                counters: Counters::default(),
            })
            .into(),
        };
        let ours: Vec<u64> = our_rules(&chain, "forward")
            .iter()
            .map(|r| r.handle)
            .collect();
        assert_eq!(ours, [5, 8]);
    }
}
