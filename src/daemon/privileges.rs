//! Least privilege, whether or not procd's ujail is there: started as
//! root with `option user`, the daemon becomes that user and group
//! (no supplementary groups) keeping only the capabilities its job needs,
//! in every set and ambient (so that nft, which it runs, inherits
//! CAP_NET_ADMIN), with no_new_privs; as chronyd does with `-u`.
//!
//! Only capabilities the bounding set still has can be kept (a container
//! may lack CAP_SYS_TIME): the daemon keeps what it needs and has, and
//! says what it lacks.

use std::ffi::CString;
use std::fmt;

/// A capability the daemon needs, with its number (linux/capability.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// Port 123.
    NetBindService = 10,
    /// nftables: the pinhole sets and rules.
    NetAdmin = 12,
    /// Stepping and slewing the clock (clock_adjtime).
    SysTime = 25,
}

pub const NEEDED: [Cap; 3] = [Cap::SysTime, Cap::NetBindService, Cap::NetAdmin];

impl Cap {
    fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// What the daemon cannot do without it.
    pub fn purpose(self) -> &'static str {
        match self {
            Cap::NetBindService => "bind port 123 (or any port below 1024)",
            Cap::NetAdmin => "keep the firewall pinholes (nft)",
            Cap::SysTime => "steer the clock (clock_control '1'; observe mode needs none)",
        }
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cap::NetBindService => "CAP_NET_BIND_SERVICE",
            Cap::NetAdmin => "CAP_NET_ADMIN",
            Cap::SysTime => "CAP_SYS_TIME",
        })
    }
}

/// What the process runs with after [`drop_to`].
#[derive(Debug, PartialEq, Eq)]
pub struct Privileges {
    /// `Some(user)` when the daemon switched to it.
    pub switched_to: Option<String>,
    pub uid: u32,
    /// The name of `uid`, for messages.
    pub name: String,
    /// The needed capabilities it holds.
    pub kept: Vec<Cap>,
    /// The needed capabilities it does not hold.
    pub lacking: Vec<Cap>,
}

// capget/capset (linux/capability.h): version 3 takes two data words; the
// capabilities needed here all live in the first.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn capget() -> Result<CapData, String> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: the header and a two-element data array, as version 3 asks.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if r != 0 {
        return Err(os_error("capget"));
    }
    Ok(data[0])
}

fn capset(bits: u32) -> Result<(), String> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: bits,
            permitted: bits,
            inheritable: bits,
        },
        CapData::default(),
    ];
    // SAFETY: as in capget; the kernel only reads `data`.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if r != 0 {
        return Err(os_error("capset"));
    }
    Ok(())
}

fn prctl(option: libc::c_int, arg: libc::c_ulong, what: &str) -> Result<libc::c_int, String> {
    // SAFETY: the prctl options used here take plain integers.
    let r = unsafe { libc::prctl(option, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) };
    if r < 0 {
        return Err(os_error(what));
    }
    Ok(r)
}

fn in_bounding_set(cap: Cap) -> bool {
    prctl(
        libc::PR_CAPBSET_READ,
        cap as libc::c_ulong,
        "PR_CAPBSET_READ",
    )
    .is_ok_and(|r| r == 1)
}

/// A user's uid and primary gid, from the password database.
fn lookup(user: &str) -> Result<(u32, u32), String> {
    let name = CString::new(user).map_err(|_| format!("user '{user}': not a user name"))?;
    // SAFETY: a zeroed passwd is a valid out-parameter.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; only the ids are read.
    let r = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if r != 0 || found.is_null() {
        return Err(format!("user '{user}' does not exist"));
    }
    Ok((pwd.pw_uid, pwd.pw_gid))
}

/// The user name of `uid`, or `uid N` when it has none.
fn name_of(uid: u32) -> String {
    // SAFETY: a zeroed passwd is a valid out-parameter.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, and pw_name points into
    // `buf`, which lives until the name is copied.
    unsafe {
        let r = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found);
        if r != 0 || found.is_null() || pwd.pw_name.is_null() {
            return format!("uid {uid}");
        }
        std::ffi::CStr::from_ptr(pwd.pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

/// Become `user` if started as root (`user` empty: stay root); either way
/// report the needed capabilities held and lacking.
pub fn drop_to(user: Option<&str>) -> Result<Privileges, String> {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let Some(user) = user.filter(|_| uid == 0) else {
        let held = capget()?.effective;
        let (kept, lacking) = NEEDED.iter().partition(|c| held & c.bit() != 0);
        return Ok(Privileges {
            switched_to: None,
            uid,
            name: name_of(uid),
            kept,
            lacking,
        });
    };
    let (new_uid, gid) = lookup(user)?;
    let (kept, lacking): (Vec<Cap>, Vec<Cap>) = NEEDED.iter().partition(|&&c| in_bounding_set(c));
    let bits = kept.iter().fold(0, |b, c| b | c.bit());
    // Keep the permitted set across setuid; capset then narrows it.
    prctl(libc::PR_SET_KEEPCAPS, 1, "PR_SET_KEEPCAPS")?;
    // SAFETY: plain system calls on integers; setgroups reads no list.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(os_error("setgroups"));
        }
        if libc::setgid(gid) != 0 {
            return Err(os_error("setgid"));
        }
        if libc::setuid(new_uid) != 0 {
            return Err(os_error("setuid"));
        }
    }
    capset(bits)?;
    // Ambient capabilities survive the exec of nft as a non-root process.
    for &cap in &kept {
        raise_ambient(cap)?;
    }
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")?;
    Ok(Privileges {
        switched_to: Some(user.to_string()),
        uid: new_uid,
        name: user.to_string(),
        kept,
        lacking,
    })
}

/// PR_CAP_AMBIENT takes the capability as its third argument.
fn raise_ambient(cap: Cap) -> Result<(), String> {
    // SAFETY: prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0).
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            cap as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r < 0 {
        return Err(os_error(&format!("raising {cap} as an ambient capability")));
    }
    Ok(())
}
