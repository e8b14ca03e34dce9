//! The NTP protocol core. Sans IO: nothing here opens a socket or reads a
//! clock; callers pass packets and times in and get decisions out.

#![forbid(unsafe_code)]

pub mod client;
pub mod clock;
pub mod discipline;
pub mod engine;
mod md5;
pub mod packet;
pub mod ratelimit;
pub mod select;
pub mod server;
pub mod source;

/// RFC 5905's frequency tolerance (15 ppm): how fast the error bound of a
/// clock grows while nothing corrects it.
pub const PHI: f64 = 15e-6;

/// Stratum meaning "unsynchronised" inside the daemon; 0 on the wire.
pub const STRATUM_UNSYNC: u8 = 16;
