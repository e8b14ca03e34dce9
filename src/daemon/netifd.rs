//! OpenWrt interface names -> devices, as netifd has them now (`ubus call
//! network.interface dump`): the layer-3 device of each interface that is
//! up (`pppoe-wan` for a PPPoE WAN, `br-lan` for the LAN bridge). This is
//! the running router's answer; /etc/config/network, read at start, is the
//! fallback when ubus cannot be asked.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::ubus::blob::Msg;
use crate::ubus::session::Connection;

/// How long netifd gets to answer.
const TIMEOUT: Duration = Duration::from_secs(2);

/// interface -> device, from a dump.
pub fn parse_dump(dump: &Value) -> HashMap<String, String> {
    dump["interface"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let name = i["interface"].as_str()?;
            let device = i["l3_device"].as_str().or(i["device"].as_str())?;
            Some((name.to_string(), device.to_string()))
        })
        .collect()
}

pub async fn devices(socket: &Path) -> Result<HashMap<String, String>, String> {
    let asked = tokio::time::timeout(TIMEOUT, async {
        let mut c = Connection::connect(socket).await?;
        c.call("network.interface", "dump", Vec::new()).await
    })
    .await
    .map_err(|_| "netifd did not answer".to_string())?
    .map_err(|e| e.to_string())?;
    Ok(parse_dump(&Msg::Table(asked).to_json()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer3_devices_from_a_dump() {
        // The shape of `ubus call network.interface dump` on OpenWrt 23.05.
        let dump = serde_json::json!({"interface": [
            {"interface": "lan", "up": true, "device": "br-lan", "l3_device": "br-lan",
             "ipv6-prefix-assignment": [{"address": "2001:db8:1::", "mask": 64}]},
            {"interface": "wan", "up": true, "device": "eth0", "l3_device": "pppoe-wan"},
            {"interface": "wan6", "up": false, "device": "eth0"},
            {"interface": "broken"}
        ]});
        let d = parse_dump(&dump);
        assert_eq!(d["lan"], "br-lan");
        assert_eq!(d["wan"], "pppoe-wan");
        assert_eq!(d["wan6"], "eth0");
        assert!(!d.contains_key("broken"));
        assert!(parse_dump(&serde_json::json!({})).is_empty());
    }
}
