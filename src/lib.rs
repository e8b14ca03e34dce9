//! ntpgate: an NTP server for OpenWrt routers that serve time to the world.
//!
//! The protocol core ([`ntp`]) is sans IO; [`daemon`] is the thin tokio
//! shell around it. See DESIGN.md in the project's shared folder for the map.

pub mod clock;
pub mod config;
pub mod daemon;
pub mod firewall;
pub mod log;
pub mod net;
pub mod netwatch;
pub mod ntp;
pub mod query;
#[cfg(feature = "sim")]
pub mod sim;
pub mod status;
pub mod ubus;
