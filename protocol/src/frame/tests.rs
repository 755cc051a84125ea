use super::*;

fn parse(s: &str) -> Result<ClientFrame, FrameError> {
    ClientFrame::parse(s.as_bytes())
}

fn code(s: &str) -> ErrorCode {
    parse(s).unwrap_err().code
}

#[test]
fn parses_every_client_op() {
    let sub = parse(r#"{"op":"sub","room":"lobby","since":41,"epoch":"e1","ref":"1"}"#).unwrap();
    assert_eq!(
        sub,
        ClientFrame::Sub {
            room: RoomName::parse("lobby").unwrap(),
            since: Some(41),
            epoch: Some("e1".into()),
            reference: Some("1".into()),
        }
    );
    assert!(matches!(
        parse(r#"{"op":"unsub","room":"lobby"}"#).unwrap(),
        ClientFrame::Unsub { .. }
    ));
    let ClientFrame::Pub {
        data, ephemeral, ..
    } = parse(r#"{"op":"pub","room":"c.d","data":{"x":[1, 2]},"ephemeral":true}"#).unwrap()
    else {
        panic!("not a pub")
    };
    assert_eq!(&data[..], br#"{"x":[1, 2]}"#);
    assert!(ephemeral);
    assert!(matches!(
        parse(r#"{"op":"presence","room":"lobby","ref":"4"}"#).unwrap(),
        ClientFrame::Presence { .. }
    ));
    assert!(matches!(
        parse(r#"{"op":"refresh","token":"t","ref":"5"}"#).unwrap(),
        ClientFrame::Refresh { .. }
    ));
    assert_eq!(
        parse(r#"{"op":"ping","ref":"6"}"#).unwrap(),
        ClientFrame::Ping {
            reference: Some("6".into())
        }
    );
}

#[test]
fn data_is_passed_through_byte_for_byte() {
    for data in [
        r#"null"#,
        r#""text""#,
        r#"1.50000000000000000001"#,
        r#"{"a":"\n"}"#,
        r#"[ 1 , 2 ]"#,
    ] {
        let frame = format!(r#"{{"op":"pub","room":"r","data":{data}}}"#);
        let ClientFrame::Pub { data: got, .. } = parse(&frame).unwrap() else {
            panic!()
        };
        assert_eq!(&got[..], data.as_bytes());
    }
}

#[test]
fn data_with_raw_newlines_is_minified() {
    let frame = "{\"op\":\"pub\",\"room\":\"r\",\"data\":{\r\n\"a\": 1\n}}";
    let ClientFrame::Pub { data, .. } = parse(frame).unwrap() else {
        panic!()
    };
    assert_eq!(&data[..], b"{\"a\": 1}");
}

#[test]
fn bad_frames_are_classified() {
    assert_eq!(code("not json"), ErrorCode::BadFrame);
    assert_eq!(code("[1,2]"), ErrorCode::BadFrame);
    assert_eq!(code(r#"{"room":"a"}"#), ErrorCode::BadFrame);
    assert_eq!(code(r#"{"op":"fly"}"#), ErrorCode::BadFrame);
    assert_eq!(code(r#"{"op":7}"#), ErrorCode::BadFrame);
    assert_eq!(code(r#"{"op":"sub"}"#), ErrorCode::BadFrame);
    assert_eq!(code(r#"{"op":"sub","room":5}"#), ErrorCode::BadFrame);
    assert_eq!(
        code(r#"{"op":"sub","room":"a","since":-1}"#),
        ErrorCode::BadFrame
    );
    assert_eq!(
        code(r#"{"op":"sub","room":"a","since":"4"}"#),
        ErrorCode::BadFrame
    );
    assert_eq!(
        code(r#"{"op":"sub","room":"a","since":1.5}"#),
        ErrorCode::BadFrame
    );
    assert_eq!(code(r#"{"op":"pub","room":"a"}"#), ErrorCode::BadFrame);
    assert_eq!(
        code(r#"{"op":"pub","room":"a","data":1,"ephemeral":"yes"}"#),
        ErrorCode::BadFrame
    );
    assert_eq!(code(r#"{"op":"refresh"}"#), ErrorCode::BadFrame);
    assert_eq!(code(r#"{"op":"ping","ref":3}"#), ErrorCode::BadFrame);
    assert_eq!(code(r#"{"op":"ping","op":"ping"}"#), ErrorCode::BadFrame);
    let long_ref = format!(
        r#"{{"op":"ping","ref":"{}"}}"#,
        "r".repeat(MAX_REF_BYTES + 1)
    );
    assert_eq!(code(&long_ref), ErrorCode::BadFrame);
}

#[test]
fn bad_rooms_are_bad_room_and_echo_ref_and_room() {
    for room in ["a.>", "*", "a b", "", "a..b", "@x.y"] {
        let frame = format!(
            r#"{{"op":"sub","room":{},"ref":"9"}}"#,
            serde_json::to_string(room).unwrap()
        );
        let err = parse(&frame).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRoom, "{room:?}");
        assert_eq!(err.reference.as_deref(), Some("9"));
        assert_eq!(err.room.as_deref(), Some(room));
    }
    let err = parse(r#"{"op":"nope","room":"lobby","ref":"x"}"#).unwrap_err();
    assert_eq!(
        (err.reference.as_deref(), err.room.as_deref()),
        (Some("x"), Some("lobby"))
    );
}

#[test]
fn pieces_are_split_on_newlines() {
    let pieces: Vec<&[u8]> = split_pieces(b"{\"a\":1}\n{\"b\":2}\r\n\n  \n{\"c\":3}\n").collect();
    assert_eq!(pieces, vec![&b"{\"a\":1}"[..], b"{\"b\":2}", b"{\"c\":3}"]);
}

#[test]
fn client_frames_round_trip_through_encode() {
    let frames = [
        r#"{"op":"sub","room":"lobby","since":41,"epoch":"e1","ref":"1"}"#,
        r#"{"op":"unsub","room":"lobby","ref":"2"}"#,
        r#"{"op":"pub","room":"lobby","data":{"a":1},"ref":"3"}"#,
        r#"{"op":"pub","room":"cursor.doc1","data":{},"ephemeral":true}"#,
        r#"{"op":"presence","room":"lobby","ref":"4"}"#,
        r#"{"op":"refresh","token":"t\"x","ref":"5"}"#,
        r#"{"op":"ping","ref":"6"}"#,
    ];
    for text in frames {
        let frame = parse(text).unwrap();
        assert_eq!(String::from_utf8(frame.encode()).unwrap(), text);
    }
}

#[test]
fn server_frames_encode_as_protocol_md_shows() {
    let f = ServerFrame::Subscribed {
        room: "lobby".into(),
        reference: Some("1".into()),
        seq: 57,
        epoch: "e1".into(),
        recovered: true,
        replayed: 16,
    };
    assert_eq!(
        &f.encode()[..],
        br#"{"op":"subscribed","room":"lobby","ref":"1","seq":57,"epoch":"e1","recovered":true,"replayed":16}"#
    );
    assert_eq!(
        &ServerFrame::Pong { reference: None }.encode()[..],
        br#"{"op":"pong"}"#
    );
    assert_eq!(
        &ServerFrame::RefreshRequired {
            expires_in_ms: 30000
        }
        .encode()[..],
        br#"{"op":"refresh_required","expires_in_ms":30000}"#
    );
    let err = ServerFrame::Error {
        reference: Some("3".into()),
        room: Some("lobby".into()),
        code: ErrorCode::Forbidden,
        message: "line\nbreak".into(),
    };
    let line = err.encode();
    assert!(!line.contains(&b'\n'));
    assert_eq!(ServerFrame::parse(&line).unwrap(), err);
}

#[test]
fn msg_encoding_is_valid_json_and_peekable() {
    let line = encode_msg("lobby", Some(58), "alice", 1763800000123, br#"{"seq":1}"#);
    assert_eq!(
        &line[..],
        br#"{"op":"msg","room":"lobby","seq":58,"from":"alice","ts":1763800000123,"data":{"seq":1}}"#
    );
    assert_eq!(peek_msg_seq(&line), Some(58));
    let ServerFrame::Msg { seq, data, .. } = ServerFrame::parse(&line).unwrap() else {
        panic!()
    };
    assert_eq!((seq, data.get()), (Some(58), r#"{"seq":1}"#));
    let eph = encode_msg("r", None, "$server", 0, br#"{"seq":1}"#);
    assert_eq!(peek_msg_seq(&eph), None);
    let zero = encode_msg("r", Some(0), "a", 0, b"1");
    assert_eq!(peek_msg_seq(&zero), Some(0));
    let last = encode_msg("@bob", Some(u64::MAX), "$server", 0, br#"{"seq":2}"#);
    assert_eq!(peek_msg_seq(&last), Some(u64::MAX));
    // Not the layout `encode_msg` writes: no answer rather than a wrong one.
    assert_eq!(peek_msg_seq(br#"{"op":"msg","seq":3,"room":"r"}"#), None);
    assert_eq!(
        peek_msg_seq(br#"{"op":"msg","room":"r","seq":18446744073709551616}"#),
        None
    );
    assert_eq!(peek_msg_seq(br#"{"op":"msg","room":"r","seq":x}"#), None);
    assert_eq!(peek_msg_seq(br#"{"op":"msg","room":"r"#), None);
}
