//! Upstream replies into the sync engine: whatever a server (or an
//! attacker guessing our port) sends, the engine never panics, and a clock
//! command it gives is finite and within the kernel's frequency range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ntpgate::ntp::engine::{EngineSettings, SyncEngine};
use ntpgate::ntp::packet::{HEADER_LEN, UnixNanos};

fuzz_target!(|data: &[u8]| {
    let names = ["a".to_string(), "b".to_string(), "c".to_string()];
    let mut engine = SyncEngine::new(&names, EngineSettings::default(), 0.0);
    for i in 0..3 {
        engine.set_address(i, format!("192.0.2.{}:123", i + 1).parse().unwrap());
    }
    let mut now = UnixNanos(1_900_000_000_000_000_000);
    // Each chunk: upstream, a cookie byte, then a reply.
    for chunk in data.chunks(HEADER_LEN + 2) {
        let Some((&who, rest)) = chunk.split_first() else { break };
        let Some((&cookie, reply)) = rest.split_first() else { break };
        let i = usize::from(who % 3);
        let _ = engine.request(i, now, u64::from(cookie));
        // Replies that echo the cookie get past the origin check.
        let mut packet = reply.to_vec();
        if packet.len() >= 32 {
            packet[24..32].copy_from_slice(&u64::from(cookie).to_be_bytes());
        }
        now = UnixNanos(now.0 + 1_000_000 * i64::from(who));
        if let Ok(Some(command)) = engine.reply(i, &packet, now) {
            assert!(command.frequency.is_finite() && command.frequency.abs() <= 500e-6);
            assert!(command.step.is_none_or(f64::is_finite));
        }
        let _ = engine.tick(now);
        let state = engine.system_state(now);
        assert!(state.root_dispersion_at(now).is_finite());
    }
});
