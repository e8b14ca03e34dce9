//! ubus messages come from ubusd and, through it, from any local client:
//! whatever the bytes, decoding gives a message or an error, never a panic,
//! and a decoded message encodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ntpgate::ubus::{blob, wire};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = wire::decode(data) {
        let _ = m.encode();
    }
    if let Ok(fields) = blob::table(data) {
        let again = blob::encode_table(&fields);
        assert_eq!(blob::table(&again).map(|f| f.len()), Ok(fields.len()));
    }
});
