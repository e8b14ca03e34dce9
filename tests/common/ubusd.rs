//! A small ubusd for the tests, where OpenWrt's is not installed: it
//! routes as the real one does (the captures in ../shared/fixtures/ubus
//! show how, and tests/ubus_replay.rs holds our session to them): HELLO
//! with a client id, ADD_OBJECT, LOOKUP, and INVOKE forwarded to the
//! object's owner with the caller's id, its DATA and STATUS sent back.
//! `restart` drops every client and object, as a restarted ubusd would.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ntpgate::ubus::wire::{self, Message, Value, attr, kind, status};

#[derive(Default)]
struct State {
    clients: HashMap<u32, UnixStream>,
    /// path -> (object id, owner, signature)
    objects: HashMap<String, (u32, u32, Value)>,
    next_id: u32,
    /// Bumped by `restart`: the threads of an older generation stop.
    generation: u32,
}

pub struct Ubusd {
    pub path: PathBuf,
    state: Arc<Mutex<State>>,
}

fn read_message(stream: &mut UnixStream) -> Option<Message> {
    let mut start = [0u8; 12];
    stream.read_exact(&mut start).ok()?;
    let mut bytes = vec![0u8; wire::length(&start).ok()?];
    bytes[..12].copy_from_slice(&start);
    stream.read_exact(&mut bytes[12..]).ok()?;
    wire::decode(&bytes).ok()
}

fn send(state: &State, to: u32, m: &Message) {
    if let Some(mut s) = state.clients.get(&to) {
        let _ = s.write_all(&m.encode());
    }
}

fn status(seq: u16, peer: u32, code: u32) -> Message {
    Message::new(kind::STATUS, seq, peer).with(attr::STATUS, Value::U32(code))
}

impl Ubusd {
    pub fn start(path: &Path) -> Ubusd {
        let d = Ubusd {
            path: path.to_path_buf(),
            state: Arc::new(Mutex::new(State {
                next_id: 0x1000,
                ..State::default()
            })),
        };
        d.listen();
        d
    }

    fn listen(&self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind the test ubusd");
        let state = Arc::clone(&self.state);
        let generation = state.lock().unwrap().generation;
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let mut st = state.lock().unwrap();
                if st.generation != generation {
                    break;
                }
                st.next_id += 1;
                let id = st.next_id;
                st.clients.insert(id, stream.try_clone().unwrap());
                send(&st, id, &Message::new(kind::HELLO, 0, id));
                drop(st);
                let state = Arc::clone(&state);
                std::thread::spawn(move || serve_client(state, id, stream));
            }
        });
    }

    /// ubusd restarts: every connection drops, every object is gone, and
    /// the socket is bound again.
    pub fn restart(&self) {
        {
            let mut st = self.state.lock().unwrap();
            st.generation += 1;
            for s in st.clients.values() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            st.clients.clear();
            st.objects.clear();
        }
        // Wake the old accept loop so that it sees the new generation.
        let _ = UnixStream::connect(&self.path);
        self.listen();
    }

    pub fn has_object(&self, path: &str) -> bool {
        self.state.lock().unwrap().objects.contains_key(path)
    }
}

fn serve_client(state: Arc<Mutex<State>>, id: u32, mut stream: UnixStream) {
    while let Some(m) = read_message(&mut stream) {
        let mut st = state.lock().unwrap();
        match m.kind {
            kind::ADD_OBJECT => {
                st.next_id += 1;
                let obj = st.next_id;
                let path = m.str(attr::OBJPATH).unwrap_or_default().to_string();
                let signature = m
                    .table(attr::SIGNATURE)
                    .map(|t| Value::Table(t.to_vec()))
                    .unwrap_or(Value::Table(Vec::new()));
                st.objects.insert(path, (obj, id, signature));
                let data = Message::new(kind::DATA, m.seq, 0)
                    .with(attr::OBJID, Value::U32(obj))
                    .with(attr::OBJTYPE, Value::U32(obj + 0x100));
                send(&st, id, &data);
                send(&st, id, &status(m.seq, 0, status::OK));
            }
            kind::LOOKUP => {
                let wanted = m.str(attr::OBJPATH).map(str::to_string);
                let found: Vec<(String, u32, Value)> = st
                    .objects
                    .iter()
                    .filter(|(p, _)| wanted.as_ref().is_none_or(|w| w == *p))
                    .map(|(p, (o, _, s))| (p.clone(), *o, s.clone()))
                    .collect();
                for (p, o, s) in &found {
                    let data = Message::new(kind::DATA, m.seq, 0)
                        .with(attr::OBJPATH, Value::Str(p.clone()))
                        .with(attr::OBJID, Value::U32(*o))
                        .with(attr::OBJTYPE, Value::U32(o + 0x100))
                        .with(attr::SIGNATURE, s.clone());
                    send(&st, id, &data);
                }
                let code = if found.is_empty() {
                    status::NOT_FOUND
                } else {
                    status::OK
                };
                send(&st, id, &status(m.seq, 0, code));
            }
            kind::INVOKE => {
                let obj = m.u32(attr::OBJID).unwrap_or(m.peer);
                let owner = st.objects.values().find(|(o, _, _)| *o == obj).map(|v| v.1);
                match owner {
                    Some(owner) => {
                        let mut fwd = Message::new(kind::INVOKE, m.seq, id)
                            .with(attr::OBJID, Value::U32(obj))
                            .with(
                                attr::METHOD,
                                Value::Str(m.str(attr::METHOD).unwrap_or_default().into()),
                            )
                            .with(attr::USER, Value::Str("root".into()))
                            .with(attr::GROUP, Value::Str("root".into()));
                        if let Some(t) = m.table(attr::DATA) {
                            fwd = fwd.with(attr::DATA, Value::Table(t.to_vec()));
                        }
                        send(&st, owner, &fwd);
                    }
                    None => send(&st, id, &status(m.seq, obj, status::NOT_FOUND)),
                }
            }
            // An owner's answer: to the caller named in `peer`, from the object.
            kind::DATA | kind::STATUS => {
                let caller = m.peer;
                let mut back = m.clone();
                back.peer = m.u32(attr::OBJID).unwrap_or(0);
                send(&st, caller, &back);
            }
            _ => {}
        }
    }
    let mut st = state.lock().unwrap();
    st.clients.remove(&id);
    st.objects.retain(|_, (_, owner, _)| *owner != id);
}
