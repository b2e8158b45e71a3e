//! Any bytes as a DNS message; where the fast path answers, hickory-proto must agree with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outflow_core::dns::{message, wire};

fuzz_target!(|data: &[u8]| {
    let fast = wire::parse_common(data);
    let reference = message::parse_with_hickory(data);
    if let (Some(fast), Ok(reference)) = (&fast, &reference) {
        assert_eq!(fast, reference, "fast path and hickory-proto disagree");
    }
    let _ = message::parse(data);
});
