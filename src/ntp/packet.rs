//! NTP wire format (RFC 5905 §7.3, NTPv1 RFC 1059 to NTPv4), with era-safe
//! timestamps and RFC 7822 extension-field skipping.

use std::fmt;

/// Length of the fixed NTP header; every valid packet of every version has it.
pub const HEADER_LEN: usize = 48;

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET: i64 = 2_208_988_800;
const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Wall-clock time as nanoseconds since the Unix epoch (good until 2262).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixNanos(pub i64);

impl UnixNanos {
    /// Seconds from `earlier` to `self`, negative if `earlier` is later.
    pub fn seconds_since(self, earlier: UnixNanos) -> f64 {
        self.0.wrapping_sub(earlier.0) as f64 / NANOS_PER_SEC as f64
    }
}

/// A 64-bit NTP timestamp as it is on the wire: 32 bits of seconds since the
/// start of the current era and 32 bits of fraction. The era is not carried,
/// so conversion back to absolute time needs a pivot (RFC 5905 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    pub const ZERO: NtpTimestamp = NtpTimestamp(0);

    /// Truncating the seconds to 32 bits is exactly the era wrap, so times
    /// after 2036-02-07 06:28:16 UTC land in era 1 without special cases.
    pub fn from_unix(t: UnixNanos) -> Self {
        let secs = t.0.div_euclid(NANOS_PER_SEC) + NTP_UNIX_OFFSET;
        let nanos = t.0.rem_euclid(NANOS_PER_SEC) as u64;
        let frac = (nanos << 32) / NANOS_PER_SEC as u64;
        NtpTimestamp(((secs as u64) << 32) | frac)
    }

    /// The absolute time this timestamp denotes in the era that puts it
    /// closest to `pivot` (within 68 years).
    pub fn to_unix_near(self, pivot: UnixNanos) -> UnixNanos {
        let pivot_ntp = NtpTimestamp::from_unix(pivot);
        let delta = self.wrapping_sub(pivot_ntp);
        UnixNanos(pivot.0 + delta.as_nanos())
    }

    /// Signed difference `self - other`, correct across an era boundary as
    /// long as the two are less than 68 years apart.
    pub fn wrapping_sub(self, other: NtpTimestamp) -> NtpDuration {
        NtpDuration(self.0.wrapping_sub(other.0) as i64)
    }

    pub fn read(bytes: &[u8]) -> Self {
        NtpTimestamp(u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")))
    }
}

/// A signed time difference in units of 2^-32 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NtpDuration(pub i64);

impl NtpDuration {
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 4_294_967_296.0
    }

    pub fn as_nanos(self) -> i64 {
        ((self.0 as i128 * NANOS_PER_SEC as i128) >> 32) as i64
    }
}

/// The 32-bit "short" format (16.16 unsigned seconds) of root delay and
/// root dispersion; saturates instead of wrapping.
pub fn short_from_secs(secs: f64) -> u32 {
    if secs.is_nan() || secs <= 0.0 {
        return 0;
    }
    let v = secs * 65536.0;
    if v >= u32::MAX as f64 {
        u32::MAX
    } else {
        v.ceil() as u32
    }
}

pub fn short_to_secs(v: u32) -> f64 {
    v as f64 / 65536.0
}

/// Leap indicator (RFC 5905 §7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Leap {
    #[default]
    None = 0,
    AddSecond = 1,
    DelSecond = 2,
    Unsynchronised = 3,
}

impl Leap {
    pub fn from_bits(bits: u8) -> Leap {
        match bits & 3 {
            0 => Leap::None,
            1 => Leap::AddSecond,
            2 => Leap::DelSecond,
            _ => Leap::Unsynchronised,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Leap::None => "no leap",
            Leap::AddSecond => "leap second to insert",
            Leap::DelSecond => "leap second to delete",
            Leap::Unsynchronised => "unsynchronised (alarm)",
        }
    }
}

/// Association modes (RFC 5905 Figure 10). In NTPv1 the field was reserved,
/// which is why a mode 0 request can be a v1 client.
pub mod mode {
    pub const RESERVED: u8 = 0;
    pub const SYMMETRIC_ACTIVE: u8 = 1;
    pub const SYMMETRIC_PASSIVE: u8 = 2;
    pub const CLIENT: u8 = 3;
    pub const SERVER: u8 = 4;
    pub const BROADCAST: u8 = 5;
    pub const CONTROL: u8 = 6;
    pub const PRIVATE: u8 = 7;
}

/// The reference identifier: an ASCII code at stratum 0/1, an address-derived
/// identifier above.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct RefId(pub [u8; 4]);

impl RefId {
    pub const fn ascii(code: &[u8; 4]) -> RefId {
        RefId(*code)
    }

    /// IPv4: the address itself; IPv6: the first four octets of the MD5
    /// digest of the address (RFC 5905 §7.3).
    pub fn from_ip(ip: std::net::IpAddr) -> RefId {
        match crate::net::canonical(ip) {
            std::net::IpAddr::V4(v4) => RefId(v4.octets()),
            std::net::IpAddr::V6(v6) => {
                let d = super::md5::digest(&v6.octets());
                RefId([d[0], d[1], d[2], d[3]])
            }
        }
    }

    /// How a person reads it: the ASCII code when it is one, else a dotted quad.
    pub fn display(self, stratum: u8) -> String {
        let printable = self.0.iter().all(|&b| b == 0 || b.is_ascii_graphic());
        if stratum <= 1 && printable && self.0[0] != 0 {
            self.0
                .iter()
                .take_while(|&&b| b != 0)
                .map(|&b| b as char)
                .collect()
        } else {
            let [a, b, c, d] = self.0;
            // Some servers put an ASCII code at any stratum (LOCL for a
            // local clock): show it beside the address form.
            if self
                .0
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            {
                format!("{a}.{b}.{c}.{d} ({})", String::from_utf8_lossy(&self.0))
            } else {
                format!("{a}.{b}.{c}.{d}")
            }
        }
    }
}

impl fmt::Debug for RefId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RefId({:02x?})", self.0)
    }
}

/// The fixed 48-byte header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Header {
    pub leap: Leap,
    pub version: u8,
    pub mode: u8,
    pub stratum: u8,
    pub poll: i8,
    pub precision: i8,
    pub root_delay: u32,
    pub root_dispersion: u32,
    pub refid: RefId,
    pub reference: NtpTimestamp,
    pub origin: NtpTimestamp,
    pub receive: NtpTimestamp,
    pub transmit: NtpTimestamp,
}

/// Why a packet was not accepted as NTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than the 48-byte header.
    TooShort,
    /// Longer than the receive buffer (the kernel truncated it).
    TooLong,
    /// Version 0 or above 4.
    BadVersion,
    /// Not a multiple of 4 bytes, or the bytes after the header are neither
    /// well-formed extension fields nor a MAC.
    BadTrailer,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::TooShort => "shorter than an NTP header",
            ParseError::TooLong => "longer than any NTP request",
            ParseError::BadVersion => "unsupported NTP version",
            ParseError::BadTrailer => "malformed extension fields or MAC",
        })
    }
}

/// MAC lengths after the header: a crypto-NAK (key id only), NTPv2 DES
/// (key id + 8), MD5 (key id + 16) and SHA-1 (key id + 20).
const MAC_LENGTHS: [usize; 4] = [4, 12, 20, 24];

/// Decode and validate a packet: header fields, version 1-4, and the shape of
/// whatever follows the header (RFC 7822 extension fields, then optionally a
/// MAC). The trailer is only validated, never kept: nothing in it is echoed.
pub fn parse(buf: &[u8]) -> Result<Header, ParseError> {
    if buf.len() < HEADER_LEN {
        return Err(ParseError::TooShort);
    }
    let header = decode_header(buf);
    if header.version == 0 || header.version > 4 {
        return Err(ParseError::BadVersion);
    }
    if buf.len() % 4 != 0 || !trailer_is_valid(&buf[HEADER_LEN..], header.version) {
        return Err(ParseError::BadTrailer);
    }
    Ok(header)
}

fn decode_header(buf: &[u8]) -> Header {
    let u32_at = |i: usize| u32::from_be_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
    Header {
        leap: Leap::from_bits(buf[0] >> 6),
        version: (buf[0] >> 3) & 7,
        mode: buf[0] & 7,
        stratum: buf[1],
        poll: buf[2] as i8,
        precision: buf[3] as i8,
        root_delay: u32_at(4),
        root_dispersion: u32_at(8),
        refid: RefId(buf[12..16].try_into().expect("4 bytes")),
        reference: NtpTimestamp::read(&buf[16..]),
        origin: NtpTimestamp::read(&buf[24..]),
        receive: NtpTimestamp::read(&buf[32..]),
        transmit: NtpTimestamp::read(&buf[40..]),
    }
}

/// RFC 7822: extension fields are a 16-bit type, a 16-bit length (whole
/// field, a multiple of 4, at least 16), then the value. Only NTPv4 has them.
/// After the last one there may be a MAC; nothing else may follow.
fn trailer_is_valid(mut rest: &[u8], version: u8) -> bool {
    loop {
        if rest.is_empty() || MAC_LENGTHS.contains(&rest.len()) {
            return true;
        }
        if version < 4 || rest.len() < 16 {
            return false;
        }
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        if len < 16 || len % 4 != 0 || len > rest.len() {
            return false;
        }
        rest = &rest[len..];
    }
}

impl Header {
    /// Does the sender say it serves synchronised time: leap not 3 (alarm)
    /// and stratum 1-15? Stratum 0 that is no kiss code is "unspecified or
    /// invalid" (RFC 5905 §7.3), 16 and above unsynchronised.
    pub fn claims_synchronised(&self) -> bool {
        self.leap != Leap::Unsynchronised && (1..super::STRATUM_UNSYNC).contains(&self.stratum)
    }

    pub fn encode(&self, out: &mut [u8; HEADER_LEN]) {
        out[0] = ((self.leap as u8) << 6) | ((self.version & 7) << 3) | (self.mode & 7);
        out[1] = self.stratum;
        out[2] = self.poll as u8;
        out[3] = self.precision as u8;
        out[4..8].copy_from_slice(&self.root_delay.to_be_bytes());
        out[8..12].copy_from_slice(&self.root_dispersion.to_be_bytes());
        out[12..16].copy_from_slice(&self.refid.0);
        out[16..24].copy_from_slice(&self.reference.0.to_be_bytes());
        out[24..32].copy_from_slice(&self.origin.0.to_be_bytes());
        out[32..40].copy_from_slice(&self.receive.0.to_be_bytes());
        out[40..48].copy_from_slice(&self.transmit.0.to_be_bytes());
    }
}

/// Write the transmit timestamp into an encoded packet. The server calls this
/// last, just before the packet goes to the kernel.
pub fn set_transmit(packet: &mut [u8; HEADER_LEN], t: NtpTimestamp) {
    packet[40..48].copy_from_slice(&t.0.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronised_means_no_alarm_and_stratum_1_to_15() {
        let header = |leap, stratum| Header {
            leap,
            stratum,
            ..Header::default()
        };
        assert!(header(Leap::None, 1).claims_synchronised());
        assert!(header(Leap::AddSecond, 15).claims_synchronised());
        assert!(!header(Leap::Unsynchronised, 2).claims_synchronised());
        assert!(!header(Leap::None, 0).claims_synchronised());
        assert!(!header(Leap::None, 16).claims_synchronised());
        assert!(!header(Leap::None, 255).claims_synchronised());
    }

    fn request(version: u8, mode: u8) -> [u8; HEADER_LEN] {
        let mut p = [0u8; HEADER_LEN];
        p[0] = (version << 3) | mode;
        p
    }

    #[test]
    fn unix_epoch_and_era_boundary() {
        assert_eq!(NtpTimestamp::from_unix(UnixNanos(0)).0 >> 32, 2_208_988_800);
        // 2036-02-07T06:28:16Z is the first second of era 1: seconds field 0.
        let rollover =
            UnixNanos((1u64 << 32) as i64 * NANOS_PER_SEC - NTP_UNIX_OFFSET * NANOS_PER_SEC);
        assert_eq!(NtpTimestamp::from_unix(rollover).0, 0);
        let before = UnixNanos(rollover.0 - NANOS_PER_SEC / 2);
        let after = UnixNanos(rollover.0 + NANOS_PER_SEC / 2);
        let d = NtpTimestamp::from_unix(after).wrapping_sub(NtpTimestamp::from_unix(before));
        assert!((d.as_secs_f64() - 1.0).abs() < 1e-9, "{d:?}");
    }

    #[test]
    fn round_trip_near_pivot_in_both_eras() {
        let rollover_ns = ((1i64 << 32) - NTP_UNIX_OFFSET) * NANOS_PER_SEC;
        for t in [
            0,
            1_764_000_000 * NANOS_PER_SEC + 123_456_789,
            rollover_ns - 1,
            rollover_ns,
            rollover_ns + 86_400 * NANOS_PER_SEC * 365,
        ] {
            let ts = NtpTimestamp::from_unix(UnixNanos(t));
            for pivot_shift in [
                -1_000_000_000 * NANOS_PER_SEC,
                0,
                1_000_000_000 * NANOS_PER_SEC,
            ] {
                let back = ts.to_unix_near(UnixNanos(t + pivot_shift));
                assert!(
                    (back.0 - t).abs() <= 1,
                    "t={t} shift={pivot_shift} back={back:?}"
                );
            }
        }
    }

    #[test]
    fn short_format_saturates() {
        assert_eq!(short_from_secs(1.0), 65536);
        assert_eq!(short_from_secs(-1.0), 0);
        assert_eq!(short_from_secs(1e9), u32::MAX);
        assert!((short_to_secs(short_from_secs(0.25)) - 0.25).abs() < 1e-9);
    }

    #[test]
    fn header_round_trip() {
        let h = Header {
            leap: Leap::AddSecond,
            version: 4,
            mode: mode::SERVER,
            stratum: 2,
            poll: -3,
            precision: -20,
            root_delay: 0x0102_0304,
            root_dispersion: 0x0506_0708,
            refid: RefId::ascii(b"GPS\0"),
            reference: NtpTimestamp(1),
            origin: NtpTimestamp(2),
            receive: NtpTimestamp(3),
            transmit: NtpTimestamp(u64::MAX),
        };
        let mut buf = [0u8; HEADER_LEN];
        h.encode(&mut buf);
        assert_eq!(parse(&buf), Ok(h));
    }

    #[test]
    fn versions_and_lengths() {
        assert_eq!(parse(&[0u8; 47]), Err(ParseError::TooShort));
        assert_eq!(parse(&request(0, 3)), Err(ParseError::BadVersion));
        assert_eq!(parse(&request(5, 3)), Err(ParseError::BadVersion));
        for v in 1..=4 {
            assert!(parse(&request(v, 3)).is_ok());
        }
        let mut long = request(4, 3).to_vec();
        long.push(0);
        assert_eq!(parse(&long), Err(ParseError::BadTrailer));
    }

    #[test]
    fn extension_fields_and_macs() {
        let mut p = request(4, 3).to_vec();
        // One 16-byte extension field, then an MD5 MAC.
        p.extend_from_slice(&[0x01, 0x04, 0x00, 0x10]);
        p.extend_from_slice(&[0xaa; 12]);
        p.extend_from_slice(&[0xbb; 20]);
        assert!(parse(&p).is_ok());
        // Length field pointing past the end.
        let mut bad = request(4, 3).to_vec();
        bad.extend_from_slice(&[0x01, 0x04, 0x01, 0x00]);
        bad.extend_from_slice(&[0; 28]);
        assert_eq!(parse(&bad), Err(ParseError::BadTrailer));
        // NTPv3 has no extension fields, only a MAC.
        let mut v3 = request(3, 3).to_vec();
        v3.extend_from_slice(&[0; 20]);
        assert!(parse(&v3).is_ok());
        v3.extend_from_slice(&[0; 16]);
        assert_eq!(parse(&v3), Err(ParseError::BadTrailer));
    }

    #[test]
    fn refid_display() {
        assert_eq!(RefId::ascii(b"LOCL").display(1), "LOCL");
        assert_eq!(RefId([192, 0, 2, 1]).display(2), "192.0.2.1");
        assert_eq!(RefId::ascii(b"LOCL").display(10), "76.79.67.76 (LOCL)");
        assert_eq!(
            RefId::from_ip("192.0.2.1".parse().unwrap()),
            RefId([192, 0, 2, 1])
        );
        assert_eq!(
            RefId::from_ip("::ffff:192.0.2.1".parse().unwrap()),
            RefId([192, 0, 2, 1])
        );
    }
}
