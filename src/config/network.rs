//! OpenWrt interface names (`lan`, `guest`) -> Linux devices (`br-lan`),
//! from the UCI `network` config next to ours (`/etc/config/network`).
//!
//! netifd's own answer over ubus is the final word on a running router;
//! this file is what `ntpgate check` and the daemon's start can read
//! without it, and it is what netifd itself starts from.

use std::collections::HashMap;
use std::path::Path;

use super::uci;

/// What the network config says, or why it cannot say anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interfaces {
    /// Interface name -> device, from `file`.
    Known {
        file: String,
        devices: HashMap<String, Result<String, String>>,
    },
    /// No network config to read (not an OpenWrt system, or an embedded
    /// config): every pinhole must name its `device`.
    Unavailable { why: String },
}

impl Interfaces {
    /// The network config beside the config file at `config_path`.
    pub fn beside(config_path: &Path) -> Interfaces {
        let path = config_path.with_file_name("network");
        let file = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => Interfaces::parse(&text, &file),
            Err(e) => Interfaces::Unavailable {
                why: format!("cannot read {file}: {e}"),
            },
        }
    }

    pub fn parse(text: &str, file: &str) -> Interfaces {
        match uci::parse(text) {
            Ok(uci) => Interfaces::Known {
                file: file.into(),
                devices: uci
                    .sections
                    .iter()
                    .filter(|s| s.kind == "interface")
                    .filter_map(|s| Some((s.name.clone()?, device(s))))
                    .collect(),
            },
            Err(errors) => Interfaces::Unavailable {
                why: format!("{file}:{}: {}", errors[0].line, errors[0].message),
            },
        }
    }

    /// The device of interface `name`, or why there is none.
    pub fn device(&self, name: &str) -> Result<String, String> {
        match self {
            Interfaces::Known { file, devices } => match devices.get(name) {
                Some(Ok(device)) => Ok(device.clone()),
                Some(Err(why)) => Err(format!("interface '{name}' in {file}: {why}")),
                None => Err(format!("unknown interface '{name}' (not in {file})")),
            },
            Interfaces::Unavailable { why } => Err(format!(
                "cannot tell the device of interface '{name}' ({why}); set option device"
            )),
        }
    }
}

/// The last value of an option, as libuci keeps it.
fn option<'a>(section: &'a uci::Section, name: &str) -> Option<&'a str> {
    section
        .options
        .iter()
        .rev()
        .find(|o| o.name == name && !o.value.is_empty())
        .map(|o| o.value.as_str())
}

/// OpenWrt 21.02 and later name the device (`option device 'br-lan'`);
/// before that a bridge was `type bridge` (netifd calls it `br-<name>`)
/// over `ifname` ports, and a plain interface named its device in `ifname`.
fn device(section: &uci::Section) -> Result<String, String> {
    if let Some(d) = option(section, "device") {
        return Ok(d.to_string());
    }
    if option(section, "type") == Some("bridge") {
        return Ok(format!(
            "br-{}",
            section.name.as_deref().unwrap_or_default()
        ));
    }
    option(section, "ifname")
        .and_then(|i| i.split_whitespace().next())
        .map(str::to_string)
        .ok_or_else(|| "no device (option device) in its section".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_of_old_and_new_network_configs() {
        let i = Interfaces::parse(
            "config interface 'loopback'\n\toption device 'lo'\n\
             config device\n\toption name 'br-lan'\n\toption type 'bridge'\n\tlist ports 'lan1'\n\
             config interface 'lan'\n\toption device 'br-lan'\n\toption proto 'static'\n\
             config interface 'guest'\n\toption type 'bridge'\n\toption ifname 'eth0.3'\n\
             config interface 'iot'\n\toption ifname 'eth0.4 eth0.5'\n\
             config interface 'broken'\n\toption proto 'static'\n",
            "/etc/config/network",
        );
        assert_eq!(i.device("lan").unwrap(), "br-lan");
        assert_eq!(i.device("guest").unwrap(), "br-guest");
        assert_eq!(i.device("iot").unwrap(), "eth0.4");
        assert_eq!(
            i.device("wlan").unwrap_err(),
            "unknown interface 'wlan' (not in /etc/config/network)"
        );
        assert!(i.device("broken").unwrap_err().contains("no device"));
        let bad = Interfaces::parse("config interface 'lan\n", "n");
        assert!(bad.device("lan").unwrap_err().starts_with("cannot tell"));
    }
}
