//! The IPv6 pinholes through fw4: [`plan`] decides which addresses should
//! have a hole (pure); [`reconcile`] decides what to change in nftables to
//! get there (pure), with [`apply`] parsing what nft lists and building
//! the commands (pure); [`run`] runs nft. The daemon's firewall task ties
//! them together on every LAN change and on a timer.

#![forbid(unsafe_code)]

pub mod apply;
pub mod plan;
pub mod reconcile;
pub mod run;
