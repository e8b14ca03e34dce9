//! The IPv6 pinholes through fw4: [`plan`] decides which addresses should
//! have a hole (pure); [`reconcile`] decides what to change in nftables to
//! get there (pure), with [`listing`] parsing what nft lists and
//! [`commands`] building the commands (both pure); [`run`] runs nft. The daemon's firewall task ties
//! them together on every LAN change and on a timer.

#![forbid(unsafe_code)]

pub mod commands;
pub mod listing;
pub mod plan;
pub mod reconcile;
pub mod run;
