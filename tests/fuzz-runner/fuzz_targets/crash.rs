//! Panics on its committed seed, as a target with a bug would.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"boom") {
        panic!("the deliberate crash of the fuzz runner's test");
    }
});
