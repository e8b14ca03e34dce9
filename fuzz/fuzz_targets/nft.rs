//! What `nft -j list set`, `nft -j list chain` and `nft list chain` print is outside input too
//! (another program, a future nft version): any text, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ntpgate::firewall::listing::{parse_chain, parse_chain_comment, parse_set};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_set(text);
        let _ = parse_chain(text);
        let _ = parse_chain_comment(text, "ntpgate_limit");
    }
});
