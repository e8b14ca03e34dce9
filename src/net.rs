//! Address helpers shared by the config, the server and the rate limiter.

use std::fmt;
use std::net::IpAddr;

/// A dual-stack socket reports IPv4 clients as `::ffff:a.b.c.d`. Every policy
/// (allow/deny, rate limiting, refid) must see them as the IPv4 addresses
/// they are, or an IPv4 client would escape IPv4 rules.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// `host`, `host:port`, an IPv6 address, or `[IPv6]:port`: the host (a
/// name or an address, without brackets) and the port (`default_port`
/// when none is given). The one parser of this form: the config's
/// upstreams and `ntpgate query` both use it.
pub fn parse_host_port(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{p}' in '{text}' is not a port number (1-65535)")),
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{text}': '[' without ']'"))?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("'{addr}' is not an IPv6 address"))?;
        match after.strip_prefix(':') {
            Some(p) => (addr.to_string(), port(p)?),
            None if after.is_empty() => (addr.to_string(), default_port),
            None => return Err(format!("'{text}': unexpected '{after}' after ']'")),
        }
    } else if text.parse::<std::net::Ipv6Addr>().is_ok() {
        (text.to_string(), default_port)
    } else if let Some((h, p)) = text.split_once(':') {
        (h.to_string(), port(p)?)
    } else {
        (text.to_string(), default_port)
    };
    let valid_name = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
    if !valid_name {
        return Err(format!("'{text}' is not a host name or address"));
    }
    Ok((host, port))
}

/// An address prefix such as `2001:db8::/32` or `192.0.2.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// Parse `ADDR/LEN` or a bare address (a host prefix). Host bits below
    /// the prefix are cleared; `had_host_bits` tells the caller so that
    /// `ntpgate check` can point it out.
    pub fn parse(text: &str) -> Result<(Cidr, bool), String> {
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("'{addr_text}' is not an IPv4 or IPv6 address"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len_text {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("'{l}' is not a prefix length (0-{max})")),
            },
        };
        let network = mask(addr, prefix_len);
        Ok((
            Cidr {
                network,
                prefix_len,
            },
            network != addr,
        ))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix_len) == self.network
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// The address with every bit past `prefix_len` cleared.
pub fn mask(ip: IpAddr, prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = u32::MAX
                .checked_shl(32 - u32::from(prefix_len.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & keep).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX
                .checked_shl(128 - u32::from(prefix_len.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & keep).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        assert_eq!(canonical(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
    }

    #[test]
    fn cidr_parse_and_contains() {
        let (net, host_bits) = Cidr::parse("192.0.2.77/24").unwrap();
        assert!(host_bits);
        assert_eq!(net.to_string(), "192.0.2.0/24");
        assert!(net.contains(ip("192.0.2.1")));
        assert!(net.contains(ip("::ffff:192.0.2.200")));
        assert!(!net.contains(ip("192.0.3.1")));
        assert!(!net.contains(ip("::c000:201")));

        let (v6, host_bits) = Cidr::parse("2001:db8::/32").unwrap();
        assert!(!host_bits);
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));

        let (all, _) = Cidr::parse("::/0").unwrap();
        assert!(all.contains(ip("2001:db8::1")));
        assert!(!all.contains(ip("192.0.2.1")));
        let (host, _) = Cidr::parse("2001:db8::5").unwrap();
        assert_eq!(host.to_string(), "2001:db8::5/128");

        assert!(Cidr::parse("192.0.2.0/33").is_err());
        assert!(Cidr::parse("example.net/8").is_err());
        assert!(Cidr::parse("10.0.0.0/x").is_err());
    }
}
