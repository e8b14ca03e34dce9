//! A stand-in for rpcd's `uci` object (openwrt/rpcd `uci.c`), which LuCI's
//! `uci.js` calls through uhttpd to read and change /etc/config files. It
//! holds one package and answers the calls `uci.js` makes for a form:
//!
//! - `get {config}`: `{"values": {section: {".anonymous", ".type", ".name",
//!   ".index", option: "value" or ["list", ...]}}}` (`rpc_uci_dump_package`,
//!   `rpc_uci_dump_section`); status 6 (permission denied) without a `read`
//!   grant of the config in the `uci` scope, 4 for another config.
//! - `set {config, section, values}`: a string sets an option, an array
//!   replaces a list, an empty string deletes (`rpc_uci_merge_set`); status 6
//!   without a `write` grant, 4 for a section that does not exist.
//! - `delete {config, section, options}` (or `option`), or the whole
//!   section without either (`rpc_uci_delete`).
//!
//! rpcd stages changes per session until `uci apply` commits them; here a
//! change is committed at once, and [`Uci::export`] writes the package as
//! libuci's `uci_export` does on commit: every comment of the original file
//! is gone (shared/fixtures/luci/README.md: "UCI writes drop every comment
//! from /etc/config/ntpgate on the first save"). Anonymous sections are
//! named `cfgNN` (libuci adds a hash to the index). `add`, `rename`,
//! `order` and `apply` are not served: the tests do not add sections.

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

    /// One call of the `uci` object: its reply, or a ubus status.
    pub fn call(
        &mut self,
        acl: &Value,
        method: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, u32> {
        let config = args
            .get("config")
            .and_then(Value::as_str)
            .ok_or(INVALID_ARGUMENT)?;
        let mode = if method == "get" { "read" } else { "write" };
        if !uci_grants(acl, mode).iter().any(|c| c == config) {
            return Err(PERMISSION_DENIED);
        }
        if config != self.package {
            return Err(NOT_FOUND);
        }
        match method {
            "get" => Ok(json!({ "values": self.values() })),
            "set" => {
                let values = args
                    .get("values")
                    .and_then(Value::as_object)
                    .ok_or(INVALID_ARGUMENT)?;
                let section = self.section(args)?;
                for (name, value) in values {
                    let value = match value {
                        Value::Array(items) => Some(OptionValue::List(
                            items.iter().map(scalar).collect::<Result<_, _>>()?,
                        )),
                        v => Some(scalar(v)?)
                            .filter(|s| !s.is_empty())
                            .map(OptionValue::One),
                    };
                    // libuci sets an option in place, adds a new one last.
                    match (value, section.options.iter().position(|(n, _)| n == name)) {
                        (Some(value), Some(at)) => section.options[at].1 = value,
                        (Some(value), None) => section.options.push((name.clone(), value)),
                        (None, _) => section.options.retain(|(n, _)| n != name),
                    }
                }
                Ok(json!({}))
            }
            "delete" => {
                let names: Option<Vec<String>> = match (args.get("options"), args.get("option")) {
                    (Some(Value::Array(list)), _) => {
                        Some(list.iter().map(scalar).collect::<Result<_, _>>()?)
                    }
                    (_, Some(one)) => Some(vec![scalar(one)?]),
                    _ => None,
                };
                match names {
                    Some(names) => self
                        .section(args)?
                        .options
                        .retain(|(n, _)| !names.contains(n)),
                    None => {
                        let name = self.section(args)?.name.clone();
                        self.sections.retain(|s| s.name != name);
                    }
                }
                Ok(json!({}))
            }
            _ => Err(METHOD_NOT_FOUND),
        }
    }

    fn section(&mut self, args: &Map<String, Value>) -> Result<&mut Section, u32> {
        let name = args
            .get("section")
            .and_then(Value::as_str)
            .ok_or(INVALID_ARGUMENT)?;
        self.sections
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or(NOT_FOUND)
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

/// A blobmsg scalar as rpcd formats it for libuci (`rpc_uci_format_blob`).
fn scalar(v: &Value) -> Result<String, u32> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(if *b { "1" } else { "0" }.into()),
        _ => Err(INVALID_ARGUMENT),
    }
}
