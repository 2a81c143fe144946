//! Fuzzes the intake's parser: any body is an envelope or an error, and
//! every kept event reads back from its stored JSON; never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regkeeper::notification::{image_facts, parse_envelope, parse_event};

fuzz_target!(|body: &[u8]| {
    let Ok(envelope) = parse_envelope(body) else {
        return;
    };
    for kept in &envelope.kept {
        let _ = image_facts(&kept.event);
        let stored: serde_json::Value =
            serde_json::from_str(&kept.data).expect("stored data is JSON");
        assert_eq!(parse_event(&stored).as_ref(), Ok(&kept.event));
    }
});
