//! The NTP protocol core. Sans IO: nothing here opens a socket or reads a
//! clock; callers pass packets and times in and get decisions out.

pub mod client;
mod md5;
pub mod packet;
pub mod ratelimit;
pub mod server;
pub mod select;
pub mod source;
