//! Does not compile, as a target left behind by an API change would not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _: u32 = data;
});
