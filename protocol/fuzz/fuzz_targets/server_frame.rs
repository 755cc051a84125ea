//! What clients read: parsing any server piece must never panic, and the fast seq peek
//! must agree with a full parse on every `msg` the server could have written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_protocol::frame::{encode_msg, peek_msg_seq, ServerFrame};

fuzz_target!(|data: &[u8]| {
    let _ = ServerFrame::parse(data);
    if let Ok(json) = std::str::from_utf8(data) {
        if serde_json::from_str::<serde_json::Value>(json).is_ok() && !json.contains('\n') {
            let line = encode_msg("room", Some(7), "user", 1, json.as_bytes());
            assert_eq!(peek_msg_seq(&line), Some(7));
            assert!(matches!(ServerFrame::parse(&line), Ok(ServerFrame::Msg { seq: Some(7), .. })));
        }
    }
});
