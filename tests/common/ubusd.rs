//! A small ubusd for the tests, where OpenWrt's is not installed: it
//! routes as the real one does (the captures in ../shared/fixtures/ubus
//! show how, and tests/ubus_replay.rs holds our session to them): HELLO
//! with a client id, ADD_OBJECT, LOOKUP, and INVOKE forwarded to the
//! object's owner with the caller's id, user and group, its DATA and
//! STATUS sent back. `restart` drops every client and object, as a
//! restarted ubusd would.
//!
//! Its access control is ubusd's (openwrt/ubus `ubusd_acl.c`,
//! `ubusd_proto.c`, `ubusd_obj.c`, `ubusd_main.c`): the socket is made with
//! umask 0111 (anyone may connect); a client's uid and gid come from
//! SO_PEERCRED; root may do anything; anyone else only what a JSON file in
//! the ACL directory grants (`user` or `group`, `publish`, `access` with
//! `methods`; a trailing `*` matches a prefix). Files not owned by
//! root:root, or writable by group or others, or executable by others, are
//! skipped. The files are read at start and on SIGHUP only
//! ([`Ubusd::reload_acl`]). A publish the ACL does not allow is refused
//! with INVALID_ARGUMENT, as is a path another client already holds; a
//! call it does not allow with PERMISSION_DENIED; LOOKUP lists only the
//! methods the caller may call.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ntpgate::ubus::blob::Msg;
use ntpgate::ubus::session::{Connection, Signature};
use ntpgate::ubus::wire::{self, Message, Value, attr, kind, status};

const PERMISSION_DENIED: u32 = 6;

/// One object pattern of one ACL file.
struct Acl {
    pattern: String,
    partial: bool,
    uid: Option<u32>,
    gid: Option<u32>,
    publish: bool,
    methods: Vec<String>,
}

impl Acl {
    fn matches(&self, cred: (u32, u32), object: &str) -> bool {
        let who = self.uid == Some(cred.0) || self.gid == Some(cred.1);
        let what = if self.partial {
            object.starts_with(&self.pattern)
        } else {
            object == self.pattern
        };
        who && what
    }
}

#[derive(Default)]
struct State {
    clients: HashMap<u32, UnixStream>,
    /// client id -> (uid, gid)
    creds: HashMap<u32, (u32, u32)>,
    /// path -> (object id, owner, signature)
    objects: HashMap<String, (u32, u32, Value)>,
    next_id: u32,
    /// Bumped by `restart`: the threads of an older generation stop.
    generation: u32,
    acl_dir: Option<PathBuf>,
    acls: Vec<Acl>,
}

impl State {
    fn may_publish(&self, client: u32, object: &str) -> bool {
        let cred = self.creds[&client];
        cred.0 == 0
            || self
                .acls
                .iter()
                .any(|a| a.publish && a.matches(cred, object))
    }

    fn may_call(&self, client: u32, object: &str, method: &str) -> bool {
        let cred = self.creds[&client];
        cred.0 == 0
            || self.acls.iter().any(|a| {
                a.matches(cred, object) && a.methods.iter().any(|m| m == method || m == "*")
            })
    }

    fn load_acls(&mut self) {
        self.acls.clear();
        let Some(dir) = &self.acl_dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let wrong_mode = meta.permissions().mode() & 0o023 != 0;
            if !meta.is_file()
                || path.extension().is_none_or(|e| e != "json")
                || meta.uid() != 0
                || meta.gid() != 0
                || wrong_mode
            {
                continue;
            }
            let Ok(v) = std::fs::read_to_string(&path)
                .map_err(|_| ())
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|_| ()))
            else {
                continue;
            };
            // An unknown user or group counts as root's id, as in ubusd.
            let (uid, gid) = match (v["user"].as_str(), v["group"].as_str()) {
                (Some(user), _) => (Some(lookup_user(user).map_or(0, |(u, _)| u)), None),
                (None, Some(group)) => (None, Some(lookup_group(group).unwrap_or(0))),
                (None, None) => continue,
            };
            let acl = |pattern: &str, publish: bool, methods: Vec<String>| Acl {
                pattern: pattern.trim_end_matches('*').to_string(),
                partial: pattern.ends_with('*'),
                uid,
                gid,
                publish,
                methods,
            };
            for (object, rules) in v["access"].as_object().into_iter().flatten() {
                let methods = rules["methods"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m.as_str().map(str::to_string))
                    .collect();
                self.acls.push(acl(object, false, methods));
            }
            for object in v["publish"].as_array().into_iter().flatten() {
                if let Some(object) = object.as_str() {
                    self.acls.push(acl(object, true, Vec::new()));
                }
            }
        }
    }
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn lookup_group(name: &str) -> Option<u32> {
    let group = std::fs::read_to_string("/etc/group").ok()?;
    group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[0] == name).then(|| f[2].parse().ok())?
    })
}

/// The name of a uid or gid in /etc/passwd or /etc/group.
fn name_of(file: &str, id: u32) -> String {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == id.to_string()).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| id.to_string())
}

/// The peer's uid and gid (SO_PEERCRED).
fn peer_cred(stream: &UnixStream) -> (u32, u32) {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a ucred of `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "SO_PEERCRED");
    (cred.uid, cred.gid)
}

/// An object's owner in a thread of its own: connects to the ubusd at
/// `socket`, publishes `path` with `signature`, then runs `owner` with the
/// connection and the object's id. Returns once the object is published.
pub fn publish_in_thread<F, Fut>(socket: &Path, path: &'static str, signature: Signature, owner: F)
where
    F: FnOnce(Connection, u32) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let socket = socket.to_path_buf();
    let (published, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut c = Connection::connect(&socket).await.unwrap();
            let id = c.add_object(path, &signature).await.unwrap();
            published.send(()).unwrap();
            owner(c, id).await;
        });
    });
    ready.recv().expect("the object published");
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
        Self::start_with_acl(path, None)
    }

    /// A ubusd that reads its ACL files from `acl_dir` (ubusd -A).
    pub fn start_with_acl(path: &Path, acl_dir: Option<&Path>) -> Ubusd {
        let mut state = State {
            next_id: 0x1000,
            acl_dir: acl_dir.map(Path::to_path_buf),
            ..State::default()
        };
        state.load_acls();
        let d = Ubusd {
            path: path.to_path_buf(),
            state: Arc::new(Mutex::new(state)),
        };
        d.listen();
        d
    }

    /// SIGHUP: read the ACL files again.
    pub fn reload_acl(&self) {
        self.state.lock().unwrap().load_acls();
    }

    fn listen(&self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind the test ubusd");
        // ubusd binds under umask 0111.
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o666)).unwrap();
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
                st.creds.insert(id, peer_cred(&stream));
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
                let path = m.str(attr::OBJPATH).unwrap_or_default().to_string();
                if !st.may_publish(id, &path) || st.objects.contains_key(&path) {
                    send(&st, id, &status(m.seq, 0, status::INVALID_ARGUMENT));
                    continue;
                }
                st.next_id += 1;
                let obj = st.next_id;
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
                // Only the methods the caller may call; an object with
                // methods but none of them callable is not listed.
                let found: Vec<(String, u32, Value)> = st
                    .objects
                    .iter()
                    .filter(|(p, _)| wanted.as_ref().is_none_or(|w| w == *p))
                    .filter_map(|(p, (o, _, s))| {
                        let Value::Table(methods) = s else {
                            return None;
                        };
                        let callable: Vec<(String, Msg)> = methods
                            .iter()
                            .filter(|(m, _)| st.may_call(id, p, m))
                            .cloned()
                            .collect();
                        if callable.is_empty() && !methods.is_empty() {
                            None
                        } else {
                            Some((p.clone(), *o, Value::Table(callable)))
                        }
                    })
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
                let method = m.str(attr::METHOD).unwrap_or_default().to_string();
                let target = st
                    .objects
                    .iter()
                    .find(|(_, (o, _, _))| *o == obj)
                    .map(|(p, v)| (p.clone(), v.1));
                match target {
                    Some((path, _)) if !st.may_call(id, &path, &method) => {
                        send(&st, id, &status(m.seq, obj, PERMISSION_DENIED));
                    }
                    Some((_, owner)) => {
                        let (uid, gid) = st.creds[&id];
                        let mut fwd = Message::new(kind::INVOKE, m.seq, id)
                            .with(attr::OBJID, Value::U32(obj))
                            .with(attr::METHOD, Value::Str(method))
                            .with(attr::USER, Value::Str(name_of("/etc/passwd", uid)))
                            .with(attr::GROUP, Value::Str(name_of("/etc/group", gid)));
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
    st.creds.remove(&id);
    st.objects.retain(|_, (_, owner, _)| *owner != id);
}
