//! ubus, OpenWrt's message bus, spoken natively: the blob/blobmsg codec
//! (`blob`), messages (`wire`), and the async session (`session`) that
//! publishes objects and calls others. Sans-IO below `session`.

#![forbid(unsafe_code)]

pub mod blob;
pub mod session;
pub mod wire;
