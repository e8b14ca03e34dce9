//! netwatch against this machine's kernel: a dump through rtnetlink's
//! connection with netwatch's own message type, checked against what the
//! kernel shows in /sys and /proc. (Not among the unit tests, which
//! cross/unit-tests also runs under qemu-user: qemu does not translate
//! every netlink dump, see tests/cross.rs.)

use std::net::Ipv6Addr;

use ntpgate::netwatch::{Addr, connect, dump};

/// A dump of this machine's kernel against what /proc and /sys show.
#[test]
fn a_dump_matches_the_kernel_s_own_lists() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let snap = runtime.block_on(async {
        let (connection, handle) = connect().unwrap();
        tokio::spawn(connection);
        dump(&handle).await.unwrap()
    });
    for entry in std::fs::read_dir("/sys/class/net").unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let index: u32 = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let link = snap.links.iter().find(|l| l.index == index);
        assert_eq!(link.map(|l| l.name.as_str()), Some(name.as_str()));
    }
    let lo = snap.links.iter().find(|l| l.name == "lo").unwrap();
    assert!(lo.up, "lo is up");
    // /proc/net/if_inet6: address, index, prefix length, scope, flags.
    let inet6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    let mut seen = 0;
    for line in inet6.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let address = Ipv6Addr::from(u128::from_str_radix(f[0], 16).unwrap());
        let flags = u32::from_str_radix(f[4], 16).unwrap();
        let want = Addr {
            index: u32::from_str_radix(f[1], 16).unwrap(),
            address,
            prefix_len: u8::from_str_radix(f[2], 16).unwrap(),
            temporary: flags & libc::IFA_F_SECONDARY != 0,
            deprecated: flags & libc::IFA_F_DEPRECATED != 0,
        };
        assert!(snap.addrs.contains(&want), "{want:?} in {:?}", snap.addrs);
        seen += 1;
    }
    assert_eq!(snap.addrs.len(), seen, "{:?}", snap.addrs);
}
