//! Any bytes a client sends: splitting and parsing must never panic, a parsed frame must
//! survive its own encoding, and a rejected one must say what to echo.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_protocol::frame::{split_pieces, ClientFrame};

fuzz_target!(|data: &[u8]| {
    for piece in split_pieces(data) {
        match ClientFrame::parse(piece) {
            Ok(frame) => {
                let again = ClientFrame::parse(&frame.encode()).expect("an encoded frame parses");
                assert_eq!(again, frame);
            }
            Err(err) => {
                let line = err.to_server_frame().encode();
                assert!(!line.contains(&b'\n'));
            }
        }
    }
});
