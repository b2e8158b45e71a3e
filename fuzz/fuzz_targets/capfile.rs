//! Any bytes as a capture file, read to the end and analysed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outflow_core::capfile::CaptureReader;
use outflow_core::{Engine, Profile};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = CaptureReader::new(data) else { return };
    let mut engine = Engine::new(&Profile::default());
    while let Ok(true) = reader.advance() {
        if let Some(p) = reader.packet() {
            engine.observe(&p);
        }
    }
    let _ = engine.finish();
});
