//! libubox's blob and blobmsg formats: the payload of every ubus message.
//!
//! A blob attribute is a big-endian `u32` tag (bit 31: extended, i.e. a
//! blobmsg with a name; bits 24-30: id or type; bits 0-23: length including
//! the tag), its payload, and padding to 4 bytes. A blobmsg's payload starts
//! with `be16 namelen | name | NUL`, padded to 4, then the value.
//!
//! Decoding is ours and total: any bytes give a value or an error, never a
//! panic (fuzzed). Encoding uses the `ubus` crate's `BlobMsgBuilder`, whose
//! output is byte-identical to libubox (checked against a libubox capture).

use std::fmt;

use serde_json::{Map, Number, Value};
use ubus::{BlobMsgBuilder, BlobMsgType, BlobTag};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(what: impl Into<String>) -> Error {
    Error(what.into())
}

/// One blob attribute, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    pub id: u32,
    pub extended: bool,
    /// The bytes after the tag, without padding.
    pub payload: &'a [u8],
}

const TAG: usize = 4;
/// Nesting deeper than this is refused (a crafted message could recurse).
const MAX_DEPTH: usize = 32;

fn padded(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes in `data`, one after the other.
pub fn attrs(data: &[u8]) -> Result<Vec<Attr<'_>>, Error> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let tag: [u8; TAG] = rest
            .get(..TAG)
            .and_then(|t| t.try_into().ok())
            .ok_or_else(|| bad("blob attribute cut short"))?;
        let tag = u32::from_be_bytes(tag);
        let len = (tag & 0x00ff_ffff) as usize;
        if len < TAG || len > rest.len() {
            return Err(bad(format!(
                "blob attribute length {len} outside 4..={}",
                rest.len()
            )));
        }
        out.push(Attr {
            id: (tag >> 24) & 0x7f,
            extended: tag & 0x8000_0000 != 0,
            payload: &rest[TAG..len],
        });
        // The last attribute's padding may be missing.
        rest = &rest[padded(len).min(rest.len())..];
    }
    Ok(out)
}

/// A blobmsg value, with tables kept in their wire order (libubox and the
/// `ubus` CLI keep insertion order; so must a byte-exact encoder).
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Unspec,
    Array(Vec<Msg>),
    Table(Vec<(String, Msg)>),
    String(String),
    Int64(i64),
    Int32(i32),
    Int16(i16),
    Bool(bool),
    Double(f64),
}

impl Msg {
    /// A table field, by name.
    pub fn get(&self, name: &str) -> Option<&Msg> {
        match self {
            Msg::Table(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// As libubox's blobmsg_format_json writes it.
    pub fn to_json(&self) -> Value {
        match self {
            Msg::Unspec => Value::Null,
            Msg::Array(items) => Value::Array(items.iter().map(Msg::to_json).collect()),
            Msg::Table(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(n, v)| (n.clone(), v.to_json()))
                    .collect::<Map<_, _>>(),
            ),
            Msg::String(s) => Value::String(s.clone()),
            Msg::Int64(n) => Value::from(*n),
            Msg::Int32(n) => Value::from(*n),
            Msg::Int16(n) => Value::from(*n),
            Msg::Bool(b) => Value::Bool(*b),
            Msg::Double(d) => Number::from_f64(*d).map_or(Value::Null, Value::Number),
        }
    }

    /// As libubox's blobmsg_add_json_element reads JSON: integers are INT32
    /// when they fit, INT64 otherwise.
    pub fn from_json(v: &Value) -> Msg {
        match v {
            Value::Null => Msg::Unspec,
            Value::Bool(b) => Msg::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => i32::try_from(i).map_or(Msg::Int64(i), Msg::Int32),
                (None, Some(f)) if n.is_f64() => Msg::Double(f),
                // u64 beyond i64: as libubox, clamp.
                _ => Msg::Int64(i64::MAX),
            },
            Value::String(s) => Msg::String(s.clone()),
            Value::Array(a) => Msg::Array(a.iter().map(Msg::from_json).collect()),
            Value::Object(o) => Msg::Table(
                o.iter()
                    .map(|(k, v)| (k.clone(), Msg::from_json(v)))
                    .collect(),
            ),
        }
    }
}

/// Decode a blobmsg attribute: its name and value.
pub fn blobmsg(attr: &Attr<'_>) -> Result<(String, Msg), Error> {
    blobmsg_at(attr, 0)
}

fn blobmsg_at(attr: &Attr<'_>, depth: usize) -> Result<(String, Msg), Error> {
    if !attr.extended {
        return Err(bad("a blobmsg attribute without the extended bit"));
    }
    let p = attr.payload;
    let namelen = p
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or_else(|| bad("blobmsg header cut short"))?;
    let header = padded(TAG + 2 + namelen + 1) - TAG;
    if p.len() < header || p.get(2 + namelen) != Some(&0) {
        return Err(bad("blobmsg name cut short or not terminated"));
    }
    let name = std::str::from_utf8(&p[2..2 + namelen])
        .map_err(|_| bad("blobmsg name not UTF-8"))?
        .to_string();
    let value = value(attr.id, &p[header..], depth)?;
    Ok((name, value))
}

fn fixed<const N: usize>(data: &[u8]) -> Result<[u8; N], Error> {
    data.get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad(format!("blobmsg number shorter than {N} bytes")))
}

fn value(kind: u32, data: &[u8], depth: usize) -> Result<Msg, Error> {
    if depth > MAX_DEPTH {
        return Err(bad("blobmsg nested too deep"));
    }
    Ok(match kind {
        0 => Msg::Unspec,
        1 => Msg::Array(
            attrs(data)?
                .iter()
                .map(|a| blobmsg_at(a, depth + 1).map(|(_, v)| v))
                .collect::<Result<_, _>>()?,
        ),
        2 => Msg::Table(table_at(data, depth + 1)?),
        3 => {
            let text = data.split(|&b| b == 0).next().unwrap_or_default();
            Msg::String(
                std::str::from_utf8(text)
                    .map_err(|_| bad("blobmsg string not UTF-8"))?
                    .to_string(),
            )
        }
        4 => Msg::Int64(i64::from_be_bytes(fixed(data)?)),
        5 => Msg::Int32(i32::from_be_bytes(fixed(data)?)),
        6 => Msg::Int16(i16::from_be_bytes(fixed(data)?)),
        7 => Msg::Bool(fixed::<1>(data)?[0] != 0),
        8 => Msg::Double(f64::from_be_bytes(fixed(data)?)),
        other => return Err(bad(format!("unknown blobmsg type {other}"))),
    })
}

/// The fields of a table's payload (also the payload of ubus's DATA and
/// SIGNATURE attributes).
pub fn table(data: &[u8]) -> Result<Vec<(String, Msg)>, Error> {
    table_at(data, 0)
}

fn table_at(data: &[u8], depth: usize) -> Result<Vec<(String, Msg)>, Error> {
    attrs(data)?.iter().map(|a| blobmsg_at(a, depth)).collect()
}

fn builder(name: &str, msg: &Msg) -> BlobMsgBuilder<'static> {
    // BlobMsgBuilder pads every push to 4 bytes, as libubox does, and its
    // pushes fail only past 16 MiB; ubus messages are at most 1 MiB,
    // checked before they are sent.
    let kind = match msg {
        Msg::Unspec => BlobMsgType::UNSPEC,
        Msg::Array(_) => BlobMsgType::ARRAY,
        Msg::Table(_) => BlobMsgType::TABLE,
        Msg::String(_) => BlobMsgType::STRING,
        Msg::Int64(_) => BlobMsgType::INT64,
        Msg::Int32(_) => BlobMsgType::INT32,
        Msg::Int16(_) => BlobMsgType::INT16,
        Msg::Bool(_) => BlobMsgType::BOOL,
        Msg::Double(_) => BlobMsgType::DOUBLE,
    };
    let mut b = BlobMsgBuilder::new_extended(kind.value(), name);
    let _ = match msg {
        Msg::Unspec => Ok(()),
        Msg::Array(items) => items
            .iter()
            .try_for_each(|item| b.push_bytes(builder("", item).data())),
        Msg::Table(fields) => fields
            .iter()
            .try_for_each(|(n, v)| b.push_bytes(builder(n, v).data())),
        Msg::String(s) => b.push_str(s),
        Msg::Int64(n) => b.push_int64(*n),
        Msg::Int32(n) => b.push_int32(*n),
        Msg::Int16(n) => b.push_int16(*n),
        Msg::Bool(v) => b.push_bool(*v),
        Msg::Double(d) => b.push_double(*d),
    };
    b
}

/// Encode table fields as the payload of a table (or a DATA attribute).
pub fn encode_table(fields: &[(String, Msg)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(builder(name, value).data());
    }
    out
}

/// One plain (not blobmsg) attribute, padded.
pub fn encode_attr(id: u32, payload: &[u8]) -> Vec<u8> {
    let tag = BlobTag::new(id, TAG + payload.len(), false).map_or([0; 4], BlobTag::to_bytes);
    let mut out = Vec::with_capacity(padded(TAG + payload.len()));
    out.extend_from_slice(&tag);
    out.extend_from_slice(payload);
    out.resize(padded(out.len()), 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The table of ../shared/fixtures/ubus/blobmsg-table.hex, built in the
    /// same order as the libubox program that wrote it.
    fn fixture_table() -> Vec<(String, Msg)> {
        let s = |v: &str| Msg::String(v.into());
        vec![
            ("status".into(), s("running")),
            ("pid".into(), Msg::Int32(1234)),
            ("uptime_s".into(), Msg::Int32(0)),
            ("healthy".into(), Msg::Bool(true)),
            ("load".into(), Msg::Double(0.25)),
            ("bytes".into(), Msg::Int64(1 << 40)),
            ("tags".into(), Msg::Array(vec![s("a"), s("b")])),
            (
                "info".into(),
                Msg::Table(vec![("name".into(), s("demo")), ("impl".into(), s("rust"))]),
            ),
        ]
    }

    #[test]
    fn encoder_matches_libubox_byte_for_byte() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/ubus/blobmsg-table.hex"
        );
        let libubox = hex(std::fs::read_to_string(path).unwrap().trim());
        assert_eq!(encode_table(&fixture_table()), libubox);
        assert_eq!(table(&libubox).unwrap(), fixture_table());
    }

    #[test]
    fn json_round_trip_and_libubox_number_rules() {
        let v = serde_json::json!({"a": 1, "b": 5_000_000_000i64, "c": 0.5, "d": [true, null, "x"], "e": {}});
        let m = Msg::from_json(&v);
        assert_eq!(m.get("a"), Some(&Msg::Int32(1)));
        assert_eq!(m.get("b"), Some(&Msg::Int64(5_000_000_000)));
        let Msg::Table(fields) = &m else { panic!() };
        let back = table(&encode_table(fields)).unwrap();
        assert_eq!(Msg::Table(back).to_json(), v);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bytes in [
            &[0x83u8, 0, 0, 3][..],              // length under the tag
            &[0x83, 0, 0, 40, 0, 1][..],         // longer than the data
            &[0x85, 0, 0, 8, 0, 0, 0, 0][..],    // INT32 with no room for its value
            &[0x83, 0, 0, 8, 0, 9, b'x', 0][..], // name longer than the attribute
            &[0x03, 0, 0, 4][..],                // not extended
            &[0x8f, 0, 0, 8, 0, 0, 0, 0][..],    // unknown type
        ] {
            assert!(table(bytes).is_err(), "{bytes:?}");
        }
        // Deep nesting is refused, not recursed into.
        let mut deep = Msg::Int32(1);
        for _ in 0..40 {
            deep = Msg::Array(vec![deep]);
        }
        let bytes = encode_table(&[("x".into(), deep)]);
        assert!(table(&bytes).unwrap_err().0.contains("too deep"));
    }
}
