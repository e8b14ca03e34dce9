//! The reconciler, pure: from what nft showed, the pinholes the plan wants
//! and the time, the commands that make nftables match, touching only what
//! is ours (see [`super::apply`]); and the running totals of the counters
//! that nftables restarts whenever an element or a rule is replaced.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use serde_json::json;

use super::commands::{self, Commands, object};
use super::listing::{
    ACCEPT_COMMENT, Counters, Elements, JUMP_COMMENT, LimitRules, OurRule, ROUTER_COMMENT, Seen,
};
use super::plan::Limit;
use crate::config::firewall::FirewallConfig;

/// What nft showed of our objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub lan: Seen<Elements<Ipv6Addr>>,
    pub router: Seen<Elements<u16>>,
    /// The dynamic set of the rate limits' state: only whose it is (its
    /// elements, up to 65535 during a flood, are never read).
    pub limit_set: Seen<()>,
    pub limits: Seen<LimitRules>,
    /// `create` mode: our rules in the user's forward and input chains.
    pub rules: Vec<OurRule>,
    /// `create` mode: the user's chains (forward_chain, input_chain) that
    /// do not exist.
    pub absent_chains: Vec<String>,
}

impl Observed {
    /// The router's own port is open now.
    pub fn router_open(&self) -> bool {
        self.router
            .ours()
            .is_some_and(|r| !r.ours.is_empty() || !r.foreign.is_empty())
    }
}

/// What the plan wants in nftables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub lan: BTreeSet<Ipv6Addr>,
    pub router: BTreeSet<u16>,
    pub limits: BTreeSet<Limit>,
}

/// The elements and limit rules a batch deletes (to refresh or remove
/// them): their counts end with them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replaced {
    pub lan: BTreeSet<Ipv6Addr>,
    /// Limit rules, by handle.
    pub limits: BTreeSet<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub commands: Commands,
    /// It refreshes the timeout of every element.
    pub refresh: bool,
    pub replaced: Replaced,
    /// The router's port is open once it is applied.
    pub router_open: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Objects under our names that are not ours (or not of the kind we
    /// need): nothing is written. Each entry says which and why.
    Refuse(Vec<String>),
    /// Our objects are not there (fw4 stopped, restarting, or its include
    /// files missing), or `create` mode lacks the user's chains: wait.
    Wait(Vec<String>),
    /// `create` mode: add what is missing, then read again.
    Create {
        commands: Commands,
        missing: Vec<String>,
    },
    /// Make our elements and limit rules match the plan.
    Update(Update),
}

/// Name each of our objects that is missing or not ours.
fn sort<T>(
    fw: &FirewallConfig,
    kind: &str,
    name: &str,
    seen: &Seen<T>,
    missing: &mut Vec<String>,
    foreign: &mut Vec<String>,
) {
    match seen {
        Seen::Ours(_) => {}
        Seen::Missing => missing.push(object(fw, kind, name)),
        Seen::Foreign(why) => foreign.push(format!("{} {why}", object(fw, kind, name))),
    }
}

/// What to do, given what nft showed. `stale`: the elements' timeouts are
/// due for a refresh.
pub fn decide(
    fw: &FirewallConfig,
    observed: &Observed,
    desired: &Desired,
    timeout: u32,
    stale: bool,
) -> Decision {
    let (mut missing, mut foreign) = (Vec::new(), Vec::new());
    sort(
        fw,
        "set",
        &fw.lan_set,
        &observed.lan,
        &mut missing,
        &mut foreign,
    );
    sort(
        fw,
        "set",
        &fw.router_set,
        &observed.router,
        &mut missing,
        &mut foreign,
    );
    sort(
        fw,
        "set",
        &fw.limit_set,
        &observed.limit_set,
        &mut missing,
        &mut foreign,
    );
    sort(
        fw,
        "chain",
        &fw.limit_chain,
        &observed.limits,
        &mut missing,
        &mut foreign,
    );
    if !foreign.is_empty() {
        return Decision::Refuse(foreign);
    }
    if fw.create {
        if !observed.absent_chains.is_empty() {
            return Decision::Wait(
                observed
                    .absent_chains
                    .iter()
                    .map(|c| {
                        format!(
                            "{} (create mode puts its rules there)",
                            object(fw, "chain", c)
                        )
                    })
                    .collect(),
            );
        }
        let has = |comment: &str| observed.rules.iter().any(|r| r.comment == comment);
        for (chain, comment) in [
            (&fw.forward_chain, JUMP_COMMENT),
            (&fw.forward_chain, ACCEPT_COMMENT),
            (&fw.input_chain, ROUTER_COMMENT),
        ] {
            if !has(comment) {
                missing.push(format!(
                    "rule \"{comment}\" in {}",
                    object(fw, "chain", chain)
                ));
            }
        }
        if !missing.is_empty() {
            return Decision::Create {
                commands: create(fw, observed),
                missing,
            };
        }
    } else if !missing.is_empty() {
        return Decision::Wait(missing);
    }
    Decision::Update(update(fw, observed, desired, timeout, stale))
}

/// `create` mode: the sets, chain and rules that are missing.
fn create(fw: &FirewallConfig, observed: &Observed) -> Commands {
    let mut text = Vec::new();
    for (name, missing) in [
        (&fw.lan_set, observed.lan == Seen::Missing),
        (&fw.router_set, observed.router == Seen::Missing),
        (&fw.limit_set, observed.limit_set == Seen::Missing),
    ] {
        if missing {
            text.push(commands::create_set(fw, name));
        }
    }
    if observed.limits == Seen::Missing {
        text.push(commands::create_chain(fw));
    }
    let has = |comment: &str| observed.rules.iter().any(|r| r.comment == comment);
    if !has(JUMP_COMMENT) || !has(ACCEPT_COMMENT) {
        let stale: Vec<&OurRule> = observed
            .rules
            .iter()
            .filter(|r| r.comment == JUMP_COMMENT || r.comment == ACCEPT_COMMENT)
            .collect();
        text.extend(commands::create_forward_rules(fw, &stale));
    }
    if !has(ROUTER_COMMENT) {
        text.push(commands::create_input_rule(fw));
    }
    Commands {
        text,
        json: Vec::new(),
    }
}

/// The elements to delete and to add: all of ours and all wanted when
/// refreshing, else only the difference. Values someone else's element
/// holds are left to it.
fn element_changes<T: Ord + Copy>(
    current: &Elements<T>,
    wanted: &BTreeSet<T>,
    refresh: bool,
) -> (Vec<T>, Vec<T>) {
    let wanted: BTreeSet<T> = wanted.difference(&current.foreign).copied().collect();
    let ours: BTreeSet<T> = current.ours.keys().copied().collect();
    if refresh {
        (ours.into_iter().collect(), wanted.into_iter().collect())
    } else {
        (
            ours.difference(&wanted).copied().collect(),
            wanted.difference(&ours).copied().collect(),
        )
    }
}

fn update(
    fw: &FirewallConfig,
    observed: &Observed,
    desired: &Desired,
    timeout: u32,
    refresh: bool,
) -> Update {
    let empty = (
        Elements::default(),
        Elements::default(),
        LimitRules::default(),
    );
    let lan = observed.lan.ours().unwrap_or(&empty.0);
    let router = observed.router.ours().unwrap_or(&empty.1);
    let limits = observed.limits.ours().unwrap_or(&empty.2);
    let mut commands = Commands::default();
    let (lan_gone, lan_new) = element_changes(lan, &desired.lan, refresh);
    let (router_gone, router_new) = element_changes(router, &desired.router, refresh);
    let text = |a: &Ipv6Addr| json!(a.to_string());
    let port = |p: &u16| json!(p);
    for (verb, set, values) in [
        (
            "delete",
            &fw.lan_set,
            lan_gone.iter().map(text).collect::<Vec<_>>(),
        ),
        (
            "delete",
            &fw.router_set,
            router_gone.iter().map(port).collect(),
        ),
        ("add", &fw.lan_set, lan_new.iter().map(text).collect()),
        ("add", &fw.router_set, router_new.iter().map(port).collect()),
    ] {
        if !values.is_empty() {
            commands
                .json
                .push(commands::elements_command(fw, verb, set, values, timeout));
        }
    }
    let mut kept = BTreeSet::new();
    let mut replaced = Replaced {
        lan: lan_gone.into_iter().collect(),
        limits: BTreeSet::new(),
    };
    for rule in &limits.rules {
        match rule.limit {
            Some(l) if desired.limits.contains(&l) && kept.insert(l) => {}
            _ => {
                commands
                    .json
                    .push(commands::delete_rule(fw, &fw.limit_chain, rule.handle));
                replaced.limits.insert(rule.handle);
            }
        }
    }
    for l in desired.limits.difference(&kept) {
        commands.json.push(commands::add_limit_rule(fw, l));
    }
    Update {
        commands,
        refresh,
        replaced,
        router_open: !desired.router.is_empty() || !router.foreign.is_empty(),
    }
}

/// When the timeouts are due for a refresh: at a third of their length.
#[derive(Debug)]
pub struct Reconciler {
    timeout: u32,
    refreshed: Option<Instant>,
}

impl Reconciler {
    pub fn new(timeout: u32) -> Reconciler {
        Reconciler {
            timeout,
            refreshed: None,
        }
    }

    pub fn decide(
        &self,
        fw: &FirewallConfig,
        observed: &Observed,
        desired: &Desired,
        now: Instant,
    ) -> Decision {
        let due = Duration::from_secs(u64::from(self.timeout / 3));
        let stale = self
            .refreshed
            .is_none_or(|t| now.saturating_duration_since(t) >= due);
        decide(fw, observed, desired, self.timeout, stale)
    }

    /// The update ran; `ok`: nft took it.
    pub fn applied(&mut self, update: &Update, ok: bool, now: Instant) {
        if ok && update.refresh {
            self.refreshed = Some(now);
        }
    }
}

/// Running totals, per address, of counters that restart: what the
/// replaced elements or rules had counted, and what the live ones count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    done: HashMap<Ipv6Addr, Counters>,
    live: HashMap<Ipv6Addr, Counters>,
}

impl Tally {
    pub fn total(&self, addresses: &[Ipv6Addr]) -> Counters {
        addresses
            .iter()
            .flat_map(|a| [self.done.get(a), self.live.get(a)])
            .flatten()
            .fold(Counters::default(), |t, c| t + *c)
    }

    /// The counters read now; those of `ended` ones move to the totals.
    fn take(&mut self, read: impl Iterator<Item = (Ipv6Addr, Counters, bool)>) {
        self.live.clear();
        for (a, c, ended) in read {
            let into = if ended {
                self.done.entry(a).or_default()
            } else {
                self.live.entry(a).or_default()
            };
            *into = *into + c;
        }
    }

    /// The counted objects are gone (a firewall restart): what they had
    /// counted stays in the totals.
    fn vanished(&mut self) {
        for (a, c) in self.live.drain() {
            let into = self.done.entry(a).or_default();
            *into = *into + c;
        }
    }
}

/// Packets through each hole, and dropped by each hole's rate limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tallies {
    pub passed: Tally,
    pub limited: Tally,
}

impl Tallies {
    /// Take the counters nft showed, and what became of the `update` that
    /// followed (`applied`: nft took it). The counts of the elements and
    /// rules it replaced end there; a batch nft refused replaced nothing,
    /// and the same counts are read again next time.
    pub fn settle(&mut self, observed: &Observed, update: Option<&Update>, applied: bool) {
        let none = Replaced::default();
        let replaced = match update {
            Some(u) if applied => &u.replaced,
            _ => &none,
        };
        match &observed.lan {
            Seen::Ours(lan) => self.passed.take(
                lan.ours
                    .iter()
                    .map(|(a, c)| (*a, *c, replaced.lan.contains(a))),
            ),
            _ => self.passed.vanished(),
        }
        match &observed.limits {
            Seen::Ours(limits) => self.limited.take(limits.rules.iter().filter_map(|r| {
                Some((
                    r.limit?.address,
                    r.counters,
                    replaced.limits.contains(&r.handle),
                ))
            })),
            _ => self.limited.vanished(),
        }
    }
}

/// What a clean stop removes: first `ours`, one batch of our elements and
/// rules; then, in `create` mode, each object we added, one by one, so
/// that one still in use (a rule of the user's pointing at our set, say)
/// does not keep the others. Objects that hold something of someone
/// else's stay, with the reason.
pub struct Removal {
    pub ours: Commands,
    pub objects: Vec<(String, Result<String, String>)>,
}

pub fn remove(fw: &FirewallConfig, observed: &Observed) -> Removal {
    let mut ours = Commands::default();
    if let Seen::Ours(lan) = &observed.lan
        && !lan.ours.is_empty()
    {
        let values = lan.ours.keys().map(|a| json!(a.to_string())).collect();
        ours.json.push(commands::elements_command(
            fw,
            "delete",
            &fw.lan_set,
            values,
            0,
        ));
    }
    if let Seen::Ours(router) = &observed.router
        && !router.ours.is_empty()
    {
        let values = router.ours.keys().map(|p| json!(p)).collect();
        ours.json.push(commands::elements_command(
            fw,
            "delete",
            &fw.router_set,
            values,
            0,
        ));
    }
    if let Seen::Ours(limits) = &observed.limits {
        for r in &limits.rules {
            ours.json
                .push(commands::delete_rule(fw, &fw.limit_chain, r.handle));
        }
    }
    // The rate limits' state goes with them (in `create` mode, with the set).
    if observed.limit_set.ours().is_some() && !fw.create {
        ours.json.push(commands::flush_set(fw, &fw.limit_set));
    }
    let mut objects = Vec::new();
    if fw.create {
        for r in &observed.rules {
            ours.json
                .push(commands::delete_rule(fw, &r.chain, r.handle));
        }
        let delete = |kind: &str, name: &str| Ok(commands::delete_object(fw, kind, name));
        let keep = |why: String| Err(format!("left in place: it holds {why}"));
        match &observed.limits {
            Seen::Ours(l) if l.foreign > 0 => objects.push((
                object(fw, "chain", &fw.limit_chain),
                keep(format!("{} rule(s) without our comment", l.foreign)),
            )),
            Seen::Ours(_) => objects.push((
                object(fw, "chain", &fw.limit_chain),
                delete("chain", &fw.limit_chain),
            )),
            _ => {}
        }
        for (name, foreign) in [
            (&fw.lan_set, observed.lan.ours().map(|e| e.foreign.len())),
            (
                &fw.router_set,
                observed.router.ours().map(|e| e.foreign.len()),
            ),
            (&fw.limit_set, observed.limit_set.ours().map(|()| 0)),
        ] {
            match foreign {
                Some(0) => objects.push((object(fw, "set", name), delete("set", name))),
                Some(n) => objects.push((
                    object(fw, "set", name),
                    keep(format!("{n} element(s) without our comment")),
                )),
                None => {}
            }
        }
    }
    Removal { ours, objects }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::listing::LimitRule;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn counted(packets: u64) -> Counters {
        Counters {
            packets,
            bytes: packets * 76,
        }
    }

    /// Everything there and ours; `lan` elements with their counters.
    fn observed(lan: &[(&str, u64)], limits: Vec<LimitRule>) -> Observed {
        Observed {
            lan: Seen::Ours(Elements {
                ours: lan.iter().map(|&(a, p)| (ip(a), counted(p))).collect(),
                foreign: BTreeSet::new(),
            }),
            router: Seen::Ours(Elements::default()),
            limit_set: Seen::Ours(()),
            limits: Seen::Ours(LimitRules {
                rules: limits,
                foreign: 0,
            }),
            rules: Vec::new(),
            absent_chains: Vec::new(),
        }
    }

    /// The commands, one line each: verb, kind, and the set or rule.
    fn verbs(c: &Commands) -> Vec<String> {
        c.json
            .iter()
            .map(|v| {
                let (verb, body) = v.as_object().unwrap().iter().next().unwrap();
                let (kind, o) = body.as_object().unwrap().iter().next().unwrap();
                let what = match kind.as_str() {
                    "element" => format!("{} {}", o["name"], o["elem"]),
                    "set" => o["name"].to_string(),
                    _ => o["handle"]
                        .as_u64()
                        .map(|h| format!("{} handle {h}", o["chain"]))
                        .unwrap_or_else(|| o["comment"].to_string()),
                };
                format!("{verb} {kind} {what}")
            })
            .chain(c.text.iter().cloned())
            .collect()
    }

    fn update(d: Decision) -> Update {
        match d {
            Decision::Update(u) => u,
            other => panic!("not an update: {other:?}"),
        }
    }

    #[test]
    fn updates_only_our_elements_and_rules_and_never_flushes() {
        let fw = FirewallConfig::default();
        let limit = |a: &str, pps| Limit {
            address: ip(a),
            pps,
        };
        let mut o = observed(
            &[("2001:db8::1", 0), ("2001:db8::3", 0)],
            vec![
                LimitRule {
                    handle: 7,
                    limit: Some(limit("2001:db8::1", 10)),
                    counters: counted(0),
                },
                LimitRule {
                    handle: 8,
                    limit: Some(limit("2001:db8::3", 10)),
                    counters: counted(0),
                },
            ],
        );
        // Someone else's element holds ::9: it stays, and is not added.
        if let Seen::Ours(lan) = &mut o.lan {
            lan.foreign.insert(ip("2001:db8::9"));
        }
        let desired = Desired {
            lan: [ip("2001:db8::1"), ip("2001:db8::2"), ip("2001:db8::9")].into(),
            router: [123].into(),
            limits: [limit("2001:db8::1", 10), limit("2001:db8::2", 10)].into(),
        };
        let u = update(decide(&fw, &o, &desired, 60, false));
        assert_eq!(
            verbs(&u.commands),
            [
                r#"delete element "ntpgate_lan6" ["2001:db8::3"]"#,
                r#"add element "ntpgate_lan6" [{"elem":{"comment":"ntpgate-managed","timeout":60,"val":"2001:db8::2"}}]"#,
                r#"add element "ntpgate_router" [{"elem":{"comment":"ntpgate-managed","timeout":60,"val":123}}]"#,
                r#"delete rule "ntpgate_limit" handle 8"#,
                r#"add rule "ntpgate-managed: limit 2001:db8::2 10""#,
            ]
        );
        assert!(!u.commands.to_json().contains("flush"));
        assert_eq!(u.replaced.lan, BTreeSet::from([ip("2001:db8::3")]));
        assert_eq!(u.replaced.limits, BTreeSet::from([8]));
        // Due for a refresh: every element of ours is replaced, the rules
        // that match the plan stay.
        let u = update(decide(&fw, &o, &desired, 60, true));
        let v = verbs(&u.commands);
        assert_eq!(
            v[0],
            r#"delete element "ntpgate_lan6" ["2001:db8::1","2001:db8::3"]"#
        );
        assert!(v[1].contains(r#""2001:db8::1""#) && v[1].contains(r#""2001:db8::2""#));
        assert!(!v[1].contains("2001:db8::9"), "{v:?}");
        assert!(!v.iter().any(|c| c.contains("handle 7")), "{v:?}");
    }

    #[test]
    fn objects_that_are_not_ours_stop_everything() {
        let fw = FirewallConfig::default();
        let mut o = observed(&[], Vec::new());
        o.limits = Seen::Foreign("is a base chain (hook input)".into());
        let desired = Desired {
            lan: [ip("2001:db8::1")].into(),
            ..Desired::default()
        };
        assert_eq!(
            decide(&fw, &o, &desired, 60, true),
            Decision::Refuse(vec![
                "chain inet fw4 ntpgate_limit is a base chain (hook input)".into()
            ])
        );
        // Missing with fw4: wait for it (its include files make them).
        o.limits = Seen::Missing;
        o.lan = Seen::Missing;
        assert_eq!(
            decide(&fw, &o, &desired, 60, true),
            Decision::Wait(vec![
                "set inet fw4 ntpgate_lan6".into(),
                "chain inet fw4 ntpgate_limit".into()
            ])
        );
    }

    #[test]
    fn create_mode_adds_what_is_missing_with_our_comments() {
        let fw = FirewallConfig {
            table: "filter".into(),
            create: true,
            ..FirewallConfig::default()
        };
        let nothing = Observed {
            lan: Seen::Missing,
            router: Seen::Missing,
            limit_set: Seen::Missing,
            limits: Seen::Missing,
            rules: Vec::new(),
            absent_chains: Vec::new(),
        };
        let Decision::Create { commands, missing } =
            decide(&fw, &nothing, &Desired::default(), 60, true)
        else {
            panic!("not a create")
        };
        assert_eq!(missing.len(), 7, "{missing:?}");
        assert_eq!(
            commands.text,
            [
                "add set inet filter ntpgate_lan6 { type ipv6_addr; flags timeout; counter; comment \"ntpgate-managed: LAN NTP servers open to the WAN\"; }",
                "add set inet filter ntpgate_router { type inet_service; flags timeout; counter; comment \"ntpgate-managed: the router's NTP server, open to the WAN\"; }",
                "add set inet filter ntpgate_flood { type ipv6_addr . ipv6_addr; flags dynamic, timeout; timeout 60s; size 65535; comment \"ntpgate-managed: per-source NTP rate limits\"; }",
                "add chain inet filter ntpgate_limit { comment \"ntpgate-managed: the per-source NTP rate limits\"; }",
                "insert rule inet filter forward udp dport 123 ip6 daddr @ntpgate_lan6 counter accept comment \"ntpgate-managed: NTP pinholes\"",
                "insert rule inet filter forward udp dport 123 jump ntpgate_limit comment \"ntpgate-managed: NTP rate limits\"",
                "insert rule inet filter input udp dport @ntpgate_router counter accept comment \"ntpgate-managed: the router's NTP server\"",
            ]
        );
        // The jump went: the accept that is left goes too, so that the
        // jump is put back above it.
        let mut o = observed(&[], Vec::new());
        o.rules = vec![
            OurRule {
                chain: "forward".into(),
                handle: 9,
                comment: ACCEPT_COMMENT.into(),
            },
            OurRule {
                chain: "input".into(),
                handle: 10,
                comment: ROUTER_COMMENT.into(),
            },
        ];
        let Decision::Create { commands, .. } = decide(&fw, &o, &Desired::default(), 60, true)
        else {
            panic!("not a create")
        };
        assert_eq!(commands.text[0], "delete rule inet filter forward handle 9");
        assert_eq!(commands.text.len(), 3);
        // The user's chains must exist.
        o.absent_chains = vec!["input".into()];
        assert!(matches!(
            decide(&fw, &o, &Desired::default(), 60, true),
            Decision::Wait(_)
        ));
    }

    #[test]
    fn a_stop_removes_only_what_is_ours() {
        let fw = FirewallConfig::default();
        let mut o = observed(
            &[("2001:db8::1", 3)],
            vec![LimitRule {
                handle: 4,
                limit: None,
                counters: counted(0),
            }],
        );
        if let Seen::Ours(lan) = &mut o.lan {
            lan.foreign.insert(ip("2001:db8::9"));
        }
        // With fw4: our elements and rules; the include files' objects stay.
        let r = remove(&fw, &o);
        assert_eq!(
            verbs(&r.ours),
            [
                r#"delete element "ntpgate_lan6" ["2001:db8::1"]"#,
                r#"delete rule "ntpgate_limit" handle 4"#,
                r#"flush set "ntpgate_flood""#,
            ]
        );
        assert!(r.objects.is_empty());
        // Create mode: our rules in the user's chains, then each object we
        // added, except the set that holds someone else's element.
        let create = FirewallConfig {
            create: true,
            ..FirewallConfig::default()
        };
        o.rules = vec![OurRule {
            chain: "forward".into(),
            handle: 9,
            comment: ACCEPT_COMMENT.into(),
        }];
        let r = remove(&create, &o);
        assert_eq!(verbs(&r.ours)[2], r#"delete rule "forward" handle 9"#);
        assert_eq!(
            r.objects,
            [
                (
                    "chain inet fw4 ntpgate_limit".to_string(),
                    Ok("delete chain inet fw4 ntpgate_limit".to_string())
                ),
                (
                    "set inet fw4 ntpgate_lan6".to_string(),
                    Err("left in place: it holds 1 element(s) without our comment".to_string())
                ),
                (
                    "set inet fw4 ntpgate_router".to_string(),
                    Ok("delete set inet fw4 ntpgate_router".to_string())
                ),
                (
                    "set inet fw4 ntpgate_flood".to_string(),
                    Ok("delete set inet fw4 ntpgate_flood".to_string())
                ),
            ]
        );
        // Nothing of ours there: nothing to do.
        o.lan = Seen::Foreign("is not ntpgate's".into());
        o.router = Seen::Missing;
        o.limit_set = Seen::Missing;
        o.limits = Seen::Missing;
        o.rules.clear();
        let r = remove(&create, &o);
        assert!(r.ours.is_empty() && r.objects.is_empty());
    }

    #[test]
    fn counters_are_counted_once_even_when_a_batch_fails() {
        let fw = FirewallConfig::default();
        let a = ip("2001:db8::1");
        let desired = Desired {
            lan: [a].into(),
            ..Desired::default()
        };
        let mut tallies = Tallies::default();
        // Due for a refresh, which nft refuses: the element stays, its
        // count is still live.
        let o = observed(&[("2001:db8::1", 5)], Vec::new());
        let u = update(decide(&fw, &o, &desired, 60, true));
        assert!(u.replaced.lan.contains(&a));
        tallies.settle(&o, Some(&u), false);
        assert_eq!(tallies.passed.total(&[a]).packets, 5);
        // The same element, two packets later; the refresh goes through.
        let o = observed(&[("2001:db8::1", 7)], Vec::new());
        let u = update(decide(&fw, &o, &desired, 60, true));
        tallies.settle(&o, Some(&u), true);
        assert_eq!(tallies.passed.total(&[a]).packets, 7);
        // The new element counts from zero.
        let o = observed(&[("2001:db8::1", 1)], Vec::new());
        tallies.settle(&o, None, false);
        assert_eq!(tallies.passed.total(&[a]).packets, 8);
        // An fw4 restart takes the set and its counts away: the total stays.
        let mut gone = o.clone();
        gone.lan = Seen::Missing;
        tallies.settle(&gone, None, false);
        assert_eq!(tallies.passed.total(&[a]).packets, 8);
        tallies.settle(&observed(&[("2001:db8::1", 2)], Vec::new()), None, false);
        assert_eq!(tallies.passed.total(&[a]).packets, 10);
    }

    #[test]
    fn refreshes_at_a_third_of_the_timeout() {
        let fw = FirewallConfig::default();
        let o = observed(&[("2001:db8::1", 0)], Vec::new());
        let desired = Desired {
            lan: [ip("2001:db8::1")].into(),
            ..Desired::default()
        };
        let mut r = Reconciler::new(60);
        let t0 = Instant::now();
        let first = update(r.decide(&fw, &o, &desired, t0));
        assert!(first.refresh);
        // nft refused it: still due.
        r.applied(&first, false, t0);
        assert!(update(r.decide(&fw, &o, &desired, t0)).refresh);
        r.applied(&first, true, t0);
        let later = update(r.decide(&fw, &o, &desired, t0 + Duration::from_secs(19)));
        assert!(!later.refresh && later.commands.is_empty());
        assert!(update(r.decide(&fw, &o, &desired, t0 + Duration::from_secs(20))).refresh);
    }
}
