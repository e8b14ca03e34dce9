//! UDP for the server: sockets bound with their options (`socket`), many
//! datagrams per system call (`batch`: recvmmsg and sendmmsg), kernel
//! receive timestamps and replies sent from the address the request came
//! to (`cmsg`: SO_TIMESTAMPNS, IP_PKTINFO / IPV6_PKTINFO, which a router
//! with many addresses on a wildcard socket needs), and the serving loop
//! (`serve`).

mod batch;
mod cmsg;
mod serve;
mod socket;

pub(super) use serve::serve_socket;
pub use socket::{ServerSocket, enable_timestamps, receive_one};
