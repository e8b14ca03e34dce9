//! Make the nftables sets match the plan: read them with `nft -j list set`,
//! write batches built with the `nftables` crate (`nft -j -f -`). Only our own set elements are touched: never a table,
//! chain, rule or another set.
//!
//! Every element carries a timeout and is refreshed well before it ends
//! (deleted and added again in one atomic batch), so holes close by
//! themselves when the daemon is gone. The per-element counters restart
//! with each refresh; [`Firewall`] keeps the running totals.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv6Addr;

use nftables::batch::Batch;
use nftables::expr::{Elem, Expression, NamedExpression};
use nftables::helper;
use nftables::schema::{Element, NfListObject};
use nftables::types::NfFamily;

/// Where our sets live: fw4's table and the names the package's include
/// file declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetNames {
    pub table: String,
    pub lan_set: String,
    pub router_set: String,
}

impl Default for SetNames {
    fn default() -> Self {
        SetNames {
            table: "fw4".into(),
            lan_set: "ntpgate_lan6".into(),
            router_set: "ntpgate_router".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// The elements in the sets now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Current {
    pub lan: BTreeMap<Ipv6Addr, Counters>,
    pub router: BTreeSet<u16>,
}

#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parse `nft -j list set` output: the elements and their counters.
pub fn parse_set(json: &str) -> Result<Vec<(String, Counters)>, Error> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| Error(format!("nft output: {e}")))?;
    let objects = v["nftables"]
        .as_array()
        .ok_or_else(|| Error("nft output without \"nftables\"".into()))?;
    let mut out = Vec::new();
    for set in objects.iter().filter_map(|o| o.get("set")) {
        for e in set["elem"].as_array().into_iter().flatten() {
            let (val, counter) = match e.get("elem") {
                Some(elem) => (&elem["val"], &elem["counter"]),
                None => (e, &serde_json::Value::Null),
            };
            let text = match val {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                other => return Err(Error(format!("unexpected set element {other}"))),
            };
            let counters = Counters {
                packets: counter["packets"].as_u64().unwrap_or(0),
                bytes: counter["bytes"].as_u64().unwrap_or(0),
            };
            out.push((text, counters));
        }
    }
    Ok(out)
}

async fn list_set(table: &str, set: &str) -> Result<Option<Vec<(String, Counters)>>, Error> {
    let out = tokio::process::Command::new("nft")
        .args(["-j", "list", "set", "inet", table, set])
        .output()
        .await
        .map_err(|e| Error(format!("cannot run nft: {e}")))?;
    if !out.status.success() {
        // No such table or set: nothing of ours is there.
        return Ok(None);
    }
    parse_set(&String::from_utf8_lossy(&out.stdout)).map(Some)
}

/// Read both sets. `None` when they do not exist.
pub async fn read(names: &SetNames) -> Result<Option<Current>, Error> {
    let (Some(lan), Some(router)) = (
        list_set(&names.table, &names.lan_set).await?,
        list_set(&names.table, &names.router_set).await?,
    ) else {
        return Ok(None);
    };
    Ok(Some(Current {
        lan: lan
            .into_iter()
            .filter_map(|(a, c)| a.parse::<Ipv6Addr>().ok().map(|a| (a, c)))
            .collect(),
        router: router
            .into_iter()
            .filter_map(|(p, _)| p.parse().ok())
            .collect(),
    }))
}

fn element<'a>(
    names: &'a SetNames,
    set: &'a str,
    val: Expression<'a>,
    timeout: Option<u32>,
) -> NfListObject<'a> {
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
        family: NfFamily::INet,
        table: Cow::Borrowed(&names.table),
        name: Cow::Borrowed(set),
        elem: Cow::Owned(vec![elem]),
    })
}

fn address(a: Ipv6Addr) -> Expression<'static> {
    Expression::String(Cow::Owned(a.to_string()))
}

/// The batch that turns `current` into `desired`, refreshing the timeout
/// of every element that stays.
pub fn batch<'a>(
    names: &'a SetNames,
    current: &Current,
    desired_lan: &BTreeSet<Ipv6Addr>,
    desired_router: &BTreeSet<u16>,
    timeout: u32,
) -> Batch<'a> {
    let mut b = Batch::new();
    for a in current.lan.keys() {
        b.delete(element(names, &names.lan_set, address(*a), None));
    }
    for p in &current.router {
        b.delete(element(
            names,
            &names.router_set,
            Expression::Number(u32::from(*p)),
            None,
        ));
    }
    for a in desired_lan {
        b.add(element(names, &names.lan_set, address(*a), Some(timeout)));
    }
    for p in desired_router {
        b.add(element(
            names,
            &names.router_set,
            Expression::Number(u32::from(*p)),
            Some(timeout),
        ));
    }
    b
}

pub async fn apply(batch: Batch<'_>) -> Result<(), Error> {
    let nft = batch.to_nftables();
    if nft.objects.is_empty() {
        return Ok(());
    }
    helper::apply_ruleset_async(&nft)
        .await
        .map_err(|e| Error(format!("nft: {e}")))
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
    fn batch_refreshes_adds_and_removes_only_our_elements() {
        let names = SetNames::default();
        let current = Current {
            lan: BTreeMap::from([("2001:db8::1".parse().unwrap(), Counters::default())]),
            router: BTreeSet::new(),
        };
        let desired: BTreeSet<Ipv6Addr> = ["2001:db8::2".parse().unwrap()].into();
        let json = serde_json::to_string(
            &batch(&names, &current, &desired, &[123].into(), 60).to_nftables(),
        )
        .unwrap();
        assert_eq!(
            json,
            r#"{"nftables":[{"delete":{"element":{"family":"inet","table":"fw4","name":"ntpgate_lan6","elem":["2001:db8::1"]}}},{"add":{"element":{"family":"inet","table":"fw4","name":"ntpgate_lan6","elem":[{"elem":{"val":"2001:db8::2","timeout":60,"expires":null,"comment":null,"counter":null}}]}}},{"add":{"element":{"family":"inet","table":"fw4","name":"ntpgate_router","elem":[{"elem":{"val":123,"timeout":60,"expires":null,"comment":null,"counter":null}}]}}}]}"#
        );
    }
}
