//! Any bytes as a DNS message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = outflow_core::dns::message::parse(data);
});
