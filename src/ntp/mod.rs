//! The NTP protocol core. Sans IO: nothing here opens a socket or reads a
//! clock; callers pass packets and times in and get decisions out.

pub mod client;
pub mod discipline;
pub mod engine;
mod md5;
pub mod packet;
pub mod ratelimit;
pub mod select;
pub mod server;
pub mod source;
