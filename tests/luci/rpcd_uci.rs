//! A stand-in for rpcd's `uci` object (openwrt/rpcd `uci.c`), which LuCI's
//! `uci.js` calls through uhttpd to read and change /etc/config files. It
//! holds one package and answers the calls `uci.js` makes for a form, with
//! the arguments as blobmsg (uhttpd's conversion of the JSON):
//!
//! - `get {config}`: `{"values": {section: {".anonymous", ".type", ".name",
//!   ".index", option: "value" or ["list", ...]}}}` (`rpc_uci_dump_package`,
//!   `rpc_uci_dump_section`); status 6 (permission denied) without a `read`
//!   grant of the config in the `uci` scope, 4 for another config.
//! - `set {config, section, values}` (`rpc_uci_set`, `rpc_uci_merge_set`):
//!   2 (invalid argument) without config, section or a values table, 6
//!   without a `write` grant, 2 for a section name that is not
//!   letters, digits and `_`, 4 for another config. Then each value in
//!   turn: 2 for an option name that is not letters, digits and `_`, 4 when
//!   the section does not exist; an array deletes the option whatever it
//!   was and adds each item as a new list at the end of the section (2 when
//!   no item is a value); a single value on a list deletes the list and
//!   adds the option at the end; on an option it sets it in place when it
//!   differs, and an empty string deletes it (libuci `uci_set`). A value is
//!   a string, an integer (printed as libubox stores it: an int32 as
//!   unsigned 32 bits, a wider one as unsigned 64 bits) or a boolean (1 or
//!   0); a double or anything else is 2 (`rpc_uci_format_blob`). An error
//!   in any value leaves the package as it was (rpcd skips `uci_save`) and
//!   is the answer (the last one); a values table with nothing in it is 4.
//! - `delete {config, section, options}` (or `option`), or the whole
//!   section without either (`rpc_uci_delete`, `rpc_uci_merge_delete`):
//!   the same checks as `set`; each name in `options` that is set is
//!   deleted, and 4 when none was; a single `option` that is not set is 4.
//!
//! The values of a `set` reach it in the order of their names (serde_json
//! sorts an object's keys), where uhttpd keeps the browser's order: it
//! only decides where in the section new options land.
//!
//! rpcd stages changes per session until `uci apply` commits them; here a
//! change is committed at once (a replay of rpcd's deltas onto the file
//! gives the same order), and [`Uci::export`] writes the package as libuci's
//! `uci_export` does on commit: every comment of the original file is gone
//! (shared/fixtures/luci/README.md: "UCI writes drop every comment from
//! /etc/config/ntpgate on the first save"). Anonymous sections are named
//! `cfgNN` (libuci adds a hash to the index). `add`, `rename`, `order`,
//! `apply`, and `set`/`delete` by `type` or `match`, are not served: LuCI's
//! form does not use them for the tests' sections.

use ntpgate::ubus::blob::Msg;
use serde_json::{Map, Value, json};

use super::uhttpd::uci_grants;

const PERMISSION_DENIED: u32 = 6;
const NOT_FOUND: u32 = 4;
const INVALID_ARGUMENT: u32 = 2;
const METHOD_NOT_FOUND: u32 = 3;

#[derive(Clone, Debug, PartialEq)]
enum OptionValue {
    One(String),
    List(Vec<String>),
}

#[derive(Clone, Debug)]
struct Section {
    name: String,
    kind: String,
    anonymous: bool,
    options: Vec<(String, OptionValue)>,
}

#[derive(Clone, Debug)]
pub struct Uci {
    package: String,
    sections: Vec<Section>,
}

/// The blobmsg table of a call's arguments or of its reply.
pub type Table = Vec<(String, Msg)>;

fn field<'a>(args: &'a [(String, Msg)], name: &str) -> Option<&'a Msg> {
    args.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn string<'a>(args: &'a [(String, Msg)], name: &str) -> Option<&'a str> {
    match field(args, name) {
        Some(Msg::String(s)) => Some(s),
        _ => None,
    }
}

/// rpcd's `rpc_uci_verify_name`: letters, digits and `_`, at least one.
fn uci_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Uci {
    /// The package `package` as libuci reads it from `text`.
    pub fn parse(package: &str, text: &str) -> Uci {
        let file = ntpgate::config::uci::parse(text).expect("a UCI file that parses");
        let sections = file
            .sections
            .iter()
            .enumerate()
            .map(|(n, s)| {
                let mut options: Vec<(String, OptionValue)> = Vec::new();
                for o in &s.options {
                    match options.iter_mut().find(|(name, _)| *name == o.name) {
                        Some((_, OptionValue::List(items))) if o.is_list => {
                            items.push(o.value.clone())
                        }
                        Some((_, v)) => {
                            *v = if o.is_list {
                                OptionValue::List(vec![o.value.clone()])
                            } else {
                                OptionValue::One(o.value.clone())
                            }
                        }
                        None => options.push((
                            o.name.clone(),
                            if o.is_list {
                                OptionValue::List(vec![o.value.clone()])
                            } else {
                                OptionValue::One(o.value.clone())
                            },
                        )),
                    }
                }
                Section {
                    name: s.name.clone().unwrap_or_else(|| format!("cfg{n:02x}")),
                    kind: s.kind.clone(),
                    anonymous: s.name.is_none(),
                    options,
                }
            })
            .collect();
        Uci {
            package: package.into(),
            sections,
        }
    }

    /// One call of the `uci` object: the data of its reply (empty for
    /// none), or a ubus status.
    pub fn call(
        &mut self,
        acl: &Value,
        method: &str,
        args: &[(String, Msg)],
    ) -> Result<Table, u32> {
        let config = string(args, "config").ok_or(INVALID_ARGUMENT)?;
        match method {
            "get" => {
                self.check_access(acl, "read", config)?;
                self.check_package(config)?;
                let reply = json!({ "values": self.values() });
                match Msg::from_json(&reply) {
                    Msg::Table(t) => Ok(t),
                    _ => unreachable!("a JSON object is a table"),
                }
            }
            "set" => {
                let (Some(section), Some(Msg::Table(values))) =
                    (string(args, "section"), field(args, "values"))
                else {
                    return Err(INVALID_ARGUMENT);
                };
                self.check_access(acl, "write", config)?;
                if !uci_name(section) {
                    return Err(INVALID_ARGUMENT);
                }
                self.check_package(config)?;
                let mut changed = self.clone();
                let mut error = None;
                for (name, value) in values {
                    if let Err(code) = changed.set(section, name, value) {
                        error = Some(code);
                    }
                }
                match error {
                    Some(code) => Err(code),
                    None if values.is_empty() => Err(NOT_FOUND),
                    None => {
                        *self = changed;
                        Ok(Vec::new())
                    }
                }
            }
            "delete" => {
                let section = string(args, "section").ok_or(INVALID_ARGUMENT)?;
                self.check_access(acl, "write", config)?;
                if !uci_name(section) {
                    return Err(INVALID_ARGUMENT);
                }
                self.check_package(config)?;
                self.delete(section, field(args, "options"), field(args, "option"))?;
                Ok(Vec::new())
            }
            _ => Err(METHOD_NOT_FOUND),
        }
    }

    fn check_access(&self, acl: &Value, mode: &str, config: &str) -> Result<(), u32> {
        if uci_grants(acl, mode).iter().any(|c| c == config) {
            Ok(())
        } else {
            Err(PERMISSION_DENIED)
        }
    }

    fn check_package(&self, config: &str) -> Result<(), u32> {
        if config == self.package {
            Ok(())
        } else {
            Err(NOT_FOUND)
        }
    }

    fn section(&mut self, name: &str) -> Result<&mut Section, u32> {
        self.sections
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or(NOT_FOUND)
    }

    /// One value of a `set`, as `rpc_uci_merge_set` applies it.
    fn set(&mut self, section: &str, name: &str, value: &Msg) -> Result<(), u32> {
        if !uci_name(name) {
            return Err(INVALID_ARGUMENT);
        }
        let s = self.section(section)?;
        let at = s.options.iter().position(|(n, _)| n == name);
        if let Msg::Array(items) = value {
            if let Some(at) = at {
                s.options.remove(at);
            }
            let items: Vec<String> = items.iter().filter_map(uci_value).collect();
            if items.is_empty() {
                return Err(INVALID_ARGUMENT);
            }
            s.options.push((name.into(), OptionValue::List(items)));
            return Ok(());
        }
        let text = uci_value(value).ok_or(INVALID_ARGUMENT)?;
        match at {
            Some(at) if matches!(s.options[at].1, OptionValue::List(_)) => {
                s.options.remove(at);
                if !text.is_empty() {
                    s.options.push((name.into(), OptionValue::One(text)));
                }
            }
            Some(at) if text.is_empty() => {
                s.options.remove(at);
            }
            Some(at) => s.options[at].1 = OptionValue::One(text),
            None if text.is_empty() => {}
            None => s.options.push((name.into(), OptionValue::One(text))),
        }
        Ok(())
    }

    /// A `delete`, as `rpc_uci_merge_delete` applies it.
    fn delete(
        &mut self,
        section: &str,
        options: Option<&Msg>,
        option: Option<&Msg>,
    ) -> Result<(), u32> {
        let s = self.section(section)?;
        match (options, option) {
            (Some(Msg::Array(names)), _) => {
                let names: Vec<&str> = names
                    .iter()
                    .filter_map(|n| match n {
                        Msg::String(n) => Some(n.as_str()),
                        _ => None,
                    })
                    .collect();
                let before = s.options.len();
                s.options.retain(|(n, _)| !names.contains(&n.as_str()));
                if s.options.len() == before {
                    return Err(NOT_FOUND);
                }
            }
            (Some(_), _) => return Err(INVALID_ARGUMENT),
            (None, Some(Msg::String(name))) => {
                let at = s
                    .options
                    .iter()
                    .position(|(n, _)| n == name)
                    .ok_or(NOT_FOUND)?;
                s.options.remove(at);
            }
            (None, Some(_)) => return Err(INVALID_ARGUMENT),
            (None, None) => {
                let name = s.name.clone();
                self.sections.retain(|s| s.name != name);
            }
        }
        Ok(())
    }

    fn values(&self) -> Value {
        let mut out = Map::new();
        for (index, s) in self.sections.iter().enumerate() {
            let mut section = Map::new();
            section.insert(".anonymous".into(), json!(s.anonymous));
            section.insert(".type".into(), json!(s.kind));
            section.insert(".name".into(), json!(s.name));
            section.insert(".index".into(), json!(index));
            for (name, value) in &s.options {
                let v = match value {
                    OptionValue::One(v) => json!(v),
                    OptionValue::List(items) => json!(items),
                };
                section.insert(name.clone(), v);
            }
            out.insert(s.name.clone(), Value::Object(section));
        }
        Value::Object(out)
    }

    /// The package as libuci writes it on commit (`uci_export`).
    pub fn export(&self) -> String {
        let quote = |v: &str| v.replace('\'', "'\\''");
        let mut out = String::new();
        for s in &self.sections {
            out.push_str(&format!("\nconfig {}", quote(&s.kind)));
            if !s.anonymous {
                out.push_str(&format!(" '{}'", quote(&s.name)));
            }
            out.push('\n');
            for (name, value) in &s.options {
                match value {
                    OptionValue::One(v) => {
                        out.push_str(&format!("\toption {name} '{}'\n", quote(v)))
                    }
                    OptionValue::List(items) => {
                        for v in items {
                            out.push_str(&format!("\tlist {name} '{}'\n", quote(v)));
                        }
                    }
                }
            }
        }
        out.push('\n');
        out
    }
}

/// A blobmsg value as rpcd formats it for libuci (`rpc_uci_format_blob`):
/// integers as the unsigned number libubox holds, a boolean as 1 or 0;
/// nothing else is a value.
fn uci_value(v: &Msg) -> Option<String> {
    match v {
        Msg::String(s) => Some(s.clone()),
        Msg::Int64(n) => Some((*n as u64).to_string()),
        Msg::Int32(n) => Some((*n as u32).to_string()),
        Msg::Int16(n) => Some((*n as u16).to_string()),
        Msg::Bool(b) => Some(if *b { "1" } else { "0" }.into()),
        _ => None,
    }
}
