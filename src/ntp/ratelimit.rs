//! Per-client rate limiting in bounded memory.
//!
//! Clients are keyed by IPv4 address and by IPv6 prefix (a host on a /64 can
//! use any of 2^64 addresses). Each key has a token bucket, kept in the form of
//! the generic cell rate algorithm: one "theoretical arrival time" per client,
//! which is all a token bucket needs (burst = bucket size, interval = time to
//! earn one token). Limited requests cost nothing, so a client that asks too
//! often is still answered at the configured average rate, and, as in chrony's
//! `ratelimit ... leak`, one in 2^leak limited requests is answered anyway so
//! that spoofing a victim's address cannot cut the victim off completely.
//!
//! The table is an array of small sets (set-associative): a key hashes (with
//! a random key, so sources cannot be chosen to collide) to one set, and a
//! newcomer evicts the member of its set that was quietest. The array starts
//! small and doubles when a newcomer finds its set full, up to the capacity
//! given: a router with few clients never holds the whole table. A new or
//! evicted client starts with a full bucket, so eviction errs towards
//! answering, and a flood of spoofed sources costs CPU, never more memory
//! than the capacity.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;

use crate::net;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimitSettings {
    /// Average seconds between answered requests.
    pub interval: f64,
    /// Requests answered back to back from a full bucket.
    pub burst: u32,
    /// Answer 1 in 2^leak limited requests anyway.
    pub leak: u8,
    /// Send a RATE kiss-o'-death instead of silence to limited clients.
    pub kod: bool,
    /// IPv6 clients sharing this many leading bits share a bucket.
    pub prefix6: u8,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            interval: 2.0,
            burst: 16,
            leak: 2,
            kod: false,
            prefix6: 64,
        }
    }
}

impl RateLimitSettings {
    /// The interval as an NTP log2 poll exponent, rounded up: replies raise
    /// the client's poll to at least this.
    pub fn poll_exponent(&self) -> i8 {
        self.interval.max(1.0).log2().ceil().min(17.0) as i8
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the limit, but chosen by the leak to be answered.
    Leaked,
    Limited,
}

/// Entries per set. Eight gives good hit rates while a lookup touches a
/// couple of cache lines only.
const WAYS: usize = 8;

/// Default table size: at most 16384 clients, 512 KiB.
pub const DEFAULT_CAPACITY: usize = 16384;

/// Sets the table starts with: 512 clients, 16 KiB.
const FIRST_SETS: usize = 64;

#[derive(Clone, Copy, Default)]
struct Entry {
    key: u128,
    /// Theoretical arrival time in monotonic nanoseconds; 0 marks a free slot.
    tat: u64,
}

pub struct RateLimiter {
    settings: RateLimitSettings,
    table: Vec<Entry>,
    set_mask: usize,
    max_sets: usize,
    hasher: RandomState,
    rng: u64,
}

impl RateLimiter {
    /// `capacity` is rounded up to a power of two times the set size.
    /// `seed` drives the leak; any value but zero.
    pub fn new(settings: RateLimitSettings, capacity: usize, seed: u64) -> Self {
        let max_sets = capacity.div_ceil(WAYS).next_power_of_two().max(1);
        let sets = FIRST_SETS.min(max_sets);
        RateLimiter {
            settings,
            table: vec![Entry::default(); sets * WAYS],
            set_mask: sets - 1,
            max_sets,
            hasher: RandomState::new(),
            rng: seed | 1,
        }
    }

    /// The most clients the table will hold.
    pub fn capacity(&self) -> usize {
        self.max_sets * WAYS
    }

    /// The slots allocated now.
    pub fn allocated(&self) -> usize {
        self.table.len()
    }

    fn set_of(&self, key: u128) -> usize {
        (self.hasher.hash_one(key) as usize) & self.set_mask
    }

    /// Double the sets: set `i`'s members stay in `i` or move to
    /// `i + sets`, by the next bit of their hash, so none is lost.
    fn grow(&mut self) {
        let sets = self.set_mask + 1;
        let mut table = vec![Entry::default(); 2 * sets * WAYS];
        let mut used = vec![0usize; 2 * sets];
        self.set_mask = 2 * sets - 1;
        for entry in self.table.iter().filter(|e| e.tat != 0) {
            let set = self.set_of(entry.key);
            table[set * WAYS + used[set]] = *entry;
            used[set] += 1;
        }
        self.table = table;
    }

    /// Clients currently remembered.
    pub fn len(&self) -> usize {
        self.table.iter().filter(|e| e.tat != 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sources (by the limiter's prefix) seen since `since_ns`: a slot's
    /// theoretical arrival time is never earlier than its last request.
    pub fn active_since(&self, since_ns: u64) -> usize {
        self.table
            .iter()
            .filter(|e| e.tat != 0 && e.tat >= since_ns)
            .count()
    }

    fn key(&self, ip: IpAddr) -> u128 {
        match net::canonical(ip) {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            v6 => match net::mask(v6, self.settings.prefix6) {
                IpAddr::V6(m) => u128::from(m),
                IpAddr::V4(_) => unreachable!("mask keeps the family"),
            },
        }
    }

    /// Account one request from `ip` at monotonic time `now_ns`.
    pub fn check(&mut self, ip: IpAddr, now_ns: u64) -> Verdict {
        let now = now_ns.max(1);
        let key = self.key(ip);
        let (set, slot) = loop {
            let set = self.set_of(key);
            let slots = &self.table[set * WAYS..(set + 1) * WAYS];
            if let Some(i) = slots.iter().position(|e| e.tat != 0 && e.key == key) {
                break (set, i);
            }
            // A free slot, else the quietest client: the earliest arrival time.
            let (i, quietest) = slots
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.tat)
                .expect("sets are never empty");
            if quietest.tat != 0 && self.set_mask + 1 < self.max_sets {
                self.grow();
                continue;
            }
            self.table[set * WAYS + i] = Entry { key, tat: now };
            break (set, i);
        };
        let slots = &mut self.table[set * WAYS..(set + 1) * WAYS];

        let interval_ns = (self.settings.interval * 1e9) as u64;
        let tolerance =
            interval_ns.saturating_mul(u64::from(self.settings.burst.saturating_sub(1)));
        let entry = &mut slots[slot];
        let start = entry.tat.max(now);
        if start - now <= tolerance {
            entry.tat = start + interval_ns;
            Verdict::Allowed
        } else if self.leak() {
            Verdict::Leaked
        } else {
            Verdict::Limited
        }
    }

    /// True with probability 2^-leak (xorshift64*: fast, and unpredictable
    /// enough for a coin the attacker cannot see).
    fn leak(&mut self) -> bool {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let leak = u32::from(self.settings.leak.min(63));
        r.trailing_zeros() >= leak
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limiter() -> RateLimiter {
        RateLimiter::new(RateLimitSettings::default(), DEFAULT_CAPACITY, 42)
    }

    #[test]
    fn burst_then_average_rate() {
        let mut rl = limiter();
        let client = ip("192.0.2.1");
        let t0 = 1000 * SEC;
        for _ in 0..16 {
            assert_eq!(rl.check(client, t0), Verdict::Allowed);
        }
        assert_ne!(rl.check(client, t0), Verdict::Allowed);
        // One token earned per 2 s interval.
        assert_eq!(rl.check(client, t0 + 2 * SEC), Verdict::Allowed);
        assert_ne!(rl.check(client, t0 + 2 * SEC), Verdict::Allowed);
    }

    #[test]
    fn pool_monitor_pattern_is_never_limited() {
        // The NTP Pool monitor: 3 queries 2 s apart, repeated every few
        // minutes, from one address; it fails a server that drops any.
        let mut rl = limiter();
        let monitor = ip("2001:db8:aaaa::123");
        let mut t = 5 * SEC;
        for round in 0..1000u64 {
            for q in 0..3 {
                assert_eq!(
                    rl.check(monitor, t + q * 2 * SEC),
                    Verdict::Allowed,
                    "round {round} query {q}"
                );
            }
            t += (60 + (round * 37) % 900) * SEC;
        }
    }

    #[test]
    fn flood_from_one_prefix_leaves_others_answered() {
        let mut rl = limiter();
        let t0 = 10 * SEC;
        let mut limited = 0;
        let mut leaked = 0;
        // 10000 requests in one second from random hosts of one /64.
        for i in 0..10_000u64 {
            let host = format!("2001:db8:1:2:{:x}:{:x}::1", i % 65536, i / 65536);
            match rl.check(ip(&host), t0 + i * (SEC / 10_000)) {
                Verdict::Allowed => {}
                Verdict::Leaked => leaked += 1,
                Verdict::Limited => limited += 1,
            }
        }
        assert!(limited > 7000, "limited {limited}");
        // Leak 2: about a quarter of the limited are answered.
        let frac = f64::from(leaked) / f64::from(leaked + limited);
        assert!((0.2..0.3).contains(&frac), "leak fraction {frac}");
        // Meanwhile a different /64 and an IPv4 client are untouched.
        assert_eq!(rl.check(ip("2001:db8:1:3::1"), t0 + SEC), Verdict::Allowed);
        assert_eq!(rl.check(ip("198.51.100.9"), t0 + SEC), Verdict::Allowed);
    }

    #[test]
    fn the_table_grows_with_its_clients_keeps_their_buckets_and_stops_at_its_bound() {
        let mut rl = limiter();
        assert_eq!(rl.allocated(), FIRST_SETS * WAYS);
        let t = 10 * SEC;
        // An abuser empties its bucket before the table grows.
        let abuser = ip("203.0.113.1");
        for _ in 0..16 {
            assert_eq!(rl.check(abuser, t), Verdict::Allowed);
        }
        // 2000 clients, one request each: more than the first sets hold.
        for i in 0..2000u32 {
            assert_eq!(
                rl.check(IpAddr::V4((0x0a00_0000 + i).into()), t),
                Verdict::Allowed
            );
        }
        assert!(rl.allocated() > FIRST_SETS * WAYS, "{}", rl.allocated());
        assert!(rl.allocated() < DEFAULT_CAPACITY, "{}", rl.allocated());
        assert_eq!(rl.len(), 2001, "no client lost in the growth");
        assert_eq!(rl.check(abuser, t), Verdict::Limited);
        // A flood of spoofed sources takes it to its bound, no further.
        for i in 0..200_000u32 {
            rl.check(IpAddr::V4(i.wrapping_mul(2_654_435_761).into()), t);
        }
        assert_eq!(rl.allocated(), DEFAULT_CAPACITY);
        assert_eq!(rl.capacity(), DEFAULT_CAPACITY);
    }

    #[test]
    fn ipv4_mapped_shares_the_ipv4_bucket() {
        let mut rl = limiter();
        for _ in 0..16 {
            assert_eq!(rl.check(ip("::ffff:192.0.2.5"), SEC), Verdict::Allowed);
        }
        assert_ne!(rl.check(ip("192.0.2.5"), SEC), Verdict::Allowed);
    }

    #[test]
    fn a_client_over_its_rate_stays_limited_while_a_flood_churns_the_table() {
        // A small table, so that the flood of spoofed sources (each seen
        // once) replaces its quiet entries hundreds of times over.
        let mut rl = RateLimiter::new(RateLimitSettings::default(), 4096, 7);
        let abuser = ip("203.0.113.1");
        let steady = ip("198.51.100.7");
        let mut t = 1000 * SEC;
        let (mut abuser_answered, mut steady_answered, mut spoofed) = (0, 0, 0u32);
        // 100 s: the abuser asks 10 times a second, a steady client every
        // 4 s, and 2000 new sources arrive between two of the abuser's
        // requests (2 million in all).
        for step in 0..1000 {
            if rl.check(abuser, t) == Verdict::Allowed {
                abuser_answered += 1;
            }
            if step % 40 == 0 && rl.check(steady, t) == Verdict::Allowed {
                steady_answered += 1;
            }
            for _ in 0..2000 {
                spoofed += 1;
                rl.check(IpAddr::V4(spoofed.wrapping_mul(2_654_435_761).into()), t);
            }
            t += SEC / 10;
        }
        assert!(rl.len() <= rl.capacity());
        // The burst, then one per interval (2 s): 16 + 50. A limiter that
        // forgot the abuser under the churn would refill its bucket each
        // time it forgot it.
        assert!(
            abuser_answered <= 16 + 50 + 1,
            "abuser answered {abuser_answered} times in 100 s"
        );
        assert_eq!(steady_answered, 25, "the steady client keeps to the rate");
    }

    #[test]
    fn poll_exponent_rounds_up() {
        let mut s = RateLimitSettings::default();
        assert_eq!(s.poll_exponent(), 1);
        s.interval = 3.0;
        assert_eq!(s.poll_exponent(), 2);
        s.interval = 0.1;
        assert_eq!(s.poll_exponent(), 0);
    }
}
