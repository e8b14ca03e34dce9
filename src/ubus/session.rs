//! The ubus session on tokio: a connection to ubusd, calls to other
//! objects, and publishing an object whose methods answer invocations.
//!
//! How ubusd talks (checked against captures of OpenWrt's ubusd): on
//! connect it sends HELLO with our client id in `peer`. ADD_OBJECT is
//! answered by DATA{OBJID, OBJTYPE} and STATUS. A call is LOOKUP (DATA per
//! object, then STATUS) and INVOKE with `peer` the object id; the owner gets
//! the INVOKE with `peer` the caller's client id and answers with the same
//! seq: DATA{OBJID, DATA} if it has data, then STATUS{STATUS, OBJID}.

use std::fmt;
use std::future::Future;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::blob::Msg;
use super::wire::{self, Message, Value, attr, kind, status};

pub const DEFAULT_SOCKET: &str = "/var/run/ubus/ubus.sock";

#[derive(Debug)]
pub enum Error {
    /// The connection failed or closed: reconnect.
    Io(String),
    /// A well-framed message that does not decode: dropped, counted.
    Malformed(String),
    /// ubusd or the object answered with this status.
    Status(u32),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Malformed(e) => write!(f, "malformed ubus message: {e}"),
            Error::Status(s) => write!(f, "ubus status {s} ({})", status_name(*s)),
        }
    }
}

pub fn status_name(s: u32) -> &'static str {
    match s {
        0 => "ok",
        1 => "invalid command",
        2 => "invalid argument",
        3 => "method not found",
        4 => "not found",
        5 => "no data",
        6 => "permission denied",
        7 => "timeout",
        8 => "not supported",
        10 => "connection failed",
        _ => "unknown error",
    }
}

pub type Table = Vec<(String, Msg)>;

pub struct Connection {
    stream: UnixStream,
    pub client_id: u32,
    seq: u16,
}

impl Connection {
    /// Connect and take ubusd's HELLO.
    pub async fn connect(path: &Path) -> Result<Connection, Error> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| Error::Io(format!("cannot connect to ubus at {}: {e}", path.display())))?;
        let mut c = Connection {
            stream,
            client_id: 0,
            seq: 0,
        };
        let hello = c.recv().await?;
        if hello.kind != kind::HELLO {
            return Err(Error::Io(format!(
                "ubusd sent message type {} instead of HELLO",
                hello.kind
            )));
        }
        c.client_id = hello.peer;
        Ok(c)
    }

    pub async fn send(&mut self, m: &Message) -> Result<(), Error> {
        let bytes = m.encode();
        if bytes.len() > wire::MAX_MESSAGE {
            return Err(Error::Status(status::UNKNOWN_ERROR));
        }
        self.stream
            .write_all(&bytes)
            .await
            .map_err(|e| Error::Io(format!("ubus: {e}")))
    }

    /// The next message. A framing error is fatal (`Io`); a message that
    /// is framed but does not decode is `Malformed` and the stream stays in
    /// step.
    pub async fn recv(&mut self) -> Result<Message, Error> {
        let bytes = self.recv_frame().await?;
        wire::decode(&bytes).map_err(|e| Error::Malformed(e.0))
    }

    /// The next whole message, undecoded.
    async fn recv_frame(&mut self) -> Result<Vec<u8>, Error> {
        let mut start = [0u8; wire::HEADER + 4];
        self.stream
            .read_exact(&mut start)
            .await
            .map_err(|e| Error::Io(format!("ubus connection: {e}")))?;
        let len = wire::length(&start).map_err(|e| Error::Io(e.0))?;
        let mut bytes = vec![0u8; len];
        bytes[..start.len()].copy_from_slice(&start);
        self.stream
            .read_exact(&mut bytes[start.len()..])
            .await
            .map_err(|e| Error::Io(format!("ubus connection: {e}")))?;
        Ok(bytes)
    }

    fn next_seq(&mut self) -> u16 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Send `m` and collect the DATA answers up to the STATUS of its seq.
    async fn request(&mut self, m: Message) -> Result<Vec<Message>, Error> {
        let seq = m.seq;
        self.send(&m).await?;
        let mut data = Vec::new();
        loop {
            let reply = match self.recv().await {
                Ok(r) => r,
                Err(Error::Malformed(_)) => continue,
                Err(e) => return Err(e),
            };
            if reply.seq != seq {
                continue;
            }
            match reply.kind {
                kind::DATA => data.push(reply),
                kind::STATUS => {
                    return match reply.u32(attr::STATUS) {
                        Some(status::OK) => Ok(data),
                        Some(s) => Err(Error::Status(s)),
                        None => Err(Error::Malformed("STATUS without a status".into())),
                    };
                }
                _ => {}
            }
        }
    }

    /// The id of the object at `path`.
    pub async fn lookup(&mut self, path: &str) -> Result<u32, Error> {
        let seq = self.next_seq();
        let m = Message::new(kind::LOOKUP, seq, 0).with(attr::OBJPATH, Value::Str(path.into()));
        let data = self.request(m).await?;
        data.iter()
            .find_map(|d| d.u32(attr::OBJID))
            .ok_or(Error::Status(status::NOT_FOUND))
    }

    /// `ubus call path method args`: the object's answer.
    pub async fn call(&mut self, path: &str, method: &str, args: Table) -> Result<Table, Error> {
        let id = self.lookup(path).await?;
        let seq = self.next_seq();
        let m = Message::new(kind::INVOKE, seq, id)
            .with(attr::OBJID, Value::U32(id))
            .with(attr::METHOD, Value::Str(method.into()))
            .with(attr::DATA, Value::Table(args));
        let data = self.request(m).await?;
        Ok(data
            .into_iter()
            .rev()
            .find_map(|d| d.table(attr::DATA).map(<[_]>::to_vec))
            .unwrap_or_default())
    }

    /// Publish an object; its id.
    pub async fn add_object(&mut self, path: &str, signature: &Signature) -> Result<u32, Error> {
        let seq = self.next_seq();
        let methods = signature
            .iter()
            .map(|(method, args)| {
                let args = args
                    .iter()
                    .map(|(name, t)| (name.to_string(), Msg::Int32(*t as i32)))
                    .collect();
                (method.to_string(), Msg::Table(args))
            })
            .collect();
        let m = Message::new(kind::ADD_OBJECT, seq, 0)
            .with(attr::OBJPATH, Value::Str(path.into()))
            .with(attr::SIGNATURE, Value::Table(methods));
        let data = self.request(m).await?;
        data.iter()
            .find_map(|d| d.u32(attr::OBJID))
            .ok_or_else(|| Error::Malformed("ADD_OBJECT answered without an object id".into()))
    }

    /// Answer invocations of object `id` until the connection ends.
    /// `malformed` is called for each message dropped because it does not
    /// decode; an INVOKE among them is answered with INVALID_ARGUMENT
    /// (its header still names the caller and the seq), so that the caller
    /// need not wait for its own timeout.
    pub async fn serve<H: Handler>(
        &mut self,
        id: u32,
        handler: &H,
        mut malformed: impl FnMut(),
    ) -> Error {
        loop {
            let bytes = match self.recv_frame().await {
                Ok(b) => b,
                Err(e) => return e,
            };
            let m = match wire::decode(&bytes) {
                Ok(m) => m,
                Err(_) => {
                    malformed();
                    if bytes[1] == kind::INVOKE {
                        let seq = u16::from_be_bytes([bytes[2], bytes[3]]);
                        let peer = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
                        let refused = Message::new(kind::STATUS, seq, peer)
                            .with(attr::STATUS, Value::U32(status::INVALID_ARGUMENT))
                            .with(attr::OBJID, Value::U32(id));
                        if let Err(e) = self.send(&refused).await {
                            return e;
                        }
                    }
                    continue;
                }
            };
            if m.kind != kind::INVOKE || m.u32(attr::OBJID) != Some(id) {
                continue;
            }
            let method = m.str(attr::METHOD).unwrap_or_default();
            let args = m.table(attr::DATA).unwrap_or_default();
            let (code, data) = match handler.invoke(method, args).await {
                Ok(data) => (status::OK, Some(data)),
                Err(code) => (code, None),
            };
            if let Some(data) = data {
                let reply = Message::new(kind::DATA, m.seq, m.peer)
                    .with(attr::OBJID, Value::U32(id))
                    .with(attr::DATA, Value::Table(data));
                if let Err(e) = self.send(&reply).await {
                    return e;
                }
            }
            let done = Message::new(kind::STATUS, m.seq, m.peer)
                .with(attr::STATUS, Value::U32(code))
                .with(attr::OBJID, Value::U32(id));
            if let Err(e) = self.send(&done).await {
                return e;
            }
        }
    }
}

/// Method name -> argument names and blobmsg types, as ADD_OBJECT declares
/// them (`ubus -v list` shows this).
pub type Signature = Vec<(&'static str, Vec<(&'static str, u32)>)>;

/// The methods of a published object.
pub trait Handler {
    /// The answer's DATA, or a ubus status code.
    fn invoke(
        &self,
        method: &str,
        args: &[(String, Msg)],
    ) -> impl Future<Output = Result<Table, u32>>;
}
