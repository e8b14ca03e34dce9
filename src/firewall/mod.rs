//! The IPv6 pinholes through fw4: [`plan`] decides which addresses should
//! have a hole (pure); [`apply`] makes our nftables sets match. The daemon's
//! firewall task runs them on every LAN change.

#![forbid(unsafe_code)]

pub mod apply;
pub mod plan;
