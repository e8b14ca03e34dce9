//! ubus messages: an 8-byte header (`u8 version | u8 type | be16 seq |
//! be32 peer`) and one blob attribute holding the message's attributes.
//! Pure: bytes in, messages out, and back.

use super::blob::{self, Error, Msg};

pub const HEADER: usize = 8;
/// ubusd's limit on a whole message.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Message types (ubusmsg.h).
pub mod kind {
    pub const HELLO: u8 = 0;
    pub const STATUS: u8 = 1;
    pub const DATA: u8 = 2;
    pub const LOOKUP: u8 = 4;
    pub const INVOKE: u8 = 5;
    pub const ADD_OBJECT: u8 = 6;
}

/// Message attributes (ubusmsg.h).
pub mod attr {
    pub const STATUS: u32 = 1;
    pub const OBJPATH: u32 = 2;
    pub const OBJID: u32 = 3;
    pub const METHOD: u32 = 4;
    pub const OBJTYPE: u32 = 5;
    pub const SIGNATURE: u32 = 6;
    pub const DATA: u32 = 7;
    pub const USER: u32 = 12;
    pub const GROUP: u32 = 13;
}

/// ubus status codes.
pub mod status {
    pub const OK: u32 = 0;
    pub const INVALID_ARGUMENT: u32 = 2;
    pub const METHOD_NOT_FOUND: u32 = 3;
    pub const NOT_FOUND: u32 = 4;
    pub const UNKNOWN_ERROR: u32 = 9;
}

/// One attribute's value, decoded by its id.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U32(u32),
    Str(String),
    /// DATA and SIGNATURE: a blobmsg table.
    Table(Vec<(String, Msg)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub kind: u8,
    pub seq: u16,
    pub peer: u32,
    /// In wire order.
    pub attrs: Vec<(u32, Value)>,
}

impl Message {
    pub fn new(kind: u8, seq: u16, peer: u32) -> Message {
        Message {
            kind,
            seq,
            peer,
            attrs: Vec::new(),
        }
    }

    pub fn with(mut self, id: u32, value: Value) -> Message {
        self.attrs.push((id, value));
        self
    }

    pub fn u32(&self, id: u32) -> Option<u32> {
        self.attrs.iter().find_map(|(i, v)| match v {
            Value::U32(n) if *i == id => Some(*n),
            _ => None,
        })
    }

    pub fn str(&self, id: u32) -> Option<&str> {
        self.attrs.iter().find_map(|(i, v)| match v {
            Value::Str(s) if *i == id => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn table(&self, id: u32) -> Option<&[(String, Msg)]> {
        self.attrs.iter().find_map(|(i, v)| match v {
            Value::Table(t) if *i == id => Some(t.as_slice()),
            _ => None,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for (id, value) in &self.attrs {
            let payload = match value {
                Value::U32(n) => n.to_be_bytes().to_vec(),
                Value::Str(s) => {
                    let mut b = s.as_bytes().to_vec();
                    b.push(0);
                    b
                }
                Value::Table(t) => blob::encode_table(t),
            };
            body.extend(blob::encode_attr(*id, &payload));
        }
        let mut out = vec![0, self.kind];
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.peer.to_be_bytes());
        out.extend(blob::encode_attr(0, &body));
        out
    }
}

/// The length of the whole message whose first 12 bytes are `start`
/// (header and the blob's tag): what to read before [`decode`].
pub fn length(start: &[u8; HEADER + 4]) -> Result<usize, Error> {
    let tag = u32::from_be_bytes([start[8], start[9], start[10], start[11]]);
    let blob = (tag & 0x00ff_ffff) as usize;
    if blob < 4 || HEADER + blob > MAX_MESSAGE {
        return Err(Error(format!("ubus message blob length {blob}")));
    }
    Ok(HEADER + blob)
}

/// Decode one whole message.
pub fn decode(bytes: &[u8]) -> Result<Message, Error> {
    if bytes.len() < HEADER + 4 {
        return Err(Error("ubus message shorter than its header".into()));
    }
    if bytes[0] != 0 {
        return Err(Error(format!("ubus message version {}", bytes[0])));
    }
    let outer = blob::attrs(&bytes[HEADER..])?;
    let [container] = outer.as_slice() else {
        return Err(Error("ubus message without exactly one blob".into()));
    };
    let mut attrs = Vec::new();
    for a in blob::attrs(container.payload)? {
        let value = match a.id {
            attr::OBJPATH | attr::METHOD | attr::USER | attr::GROUP => {
                let text = a.payload.split(|&b| b == 0).next().unwrap_or_default();
                Value::Str(
                    std::str::from_utf8(text)
                        .map_err(|_| Error("ubus string attribute not UTF-8".into()))?
                        .to_string(),
                )
            }
            attr::DATA | attr::SIGNATURE => Value::Table(blob::table(a.payload)?),
            _ => match a.payload {
                [a, b, c, d] => Value::U32(u32::from_be_bytes([*a, *b, *c, *d])),
                // Attributes we have no use for (ACTIVE, NO_REPLY ...).
                _ => continue,
            },
        };
        attrs.push((a.id, value));
    }
    Ok(Message {
        kind: bytes[1],
        seq: u16::from_be_bytes([bytes[2], bytes[3]]),
        peer: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        attrs,
    })
}
