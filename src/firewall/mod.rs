//! The IPv6 pinholes through fw4: [`plan`] decides which addresses should
//! have a hole (pure); applying the plan to nftables and watching the LAN
//! come next (see the README's status of issue 4).

pub mod apply;
pub mod plan;
