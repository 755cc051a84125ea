//! WebSocket close codes of PROTOCOL §4.

/// Why the server closes a connection. The numeric value is the close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    Normal = 1000,
    GoingAway = 1001,
    /// The peer broke RFC 6455 framing (for example a fragmented control frame).
    ProtocolError = 1002,
    Policy = 1008,
    TooLarge = 1009,
    Internal = 1011,
    Drained = 1012,
    TryAgainLater = 1013,
    SlowConsumer = 4008,
    Disconnected = 4009,
}

impl CloseCode {
    pub const ALL: [CloseCode; 10] = [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::ProtocolError,
        CloseCode::Policy,
        CloseCode::TooLarge,
        CloseCode::Internal,
        CloseCode::Drained,
        CloseCode::TryAgainLater,
        CloseCode::SlowConsumer,
        CloseCode::Disconnected,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<CloseCode> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The short reason sent in the close frame (at most 123 bytes by RFC 6455).
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal close",
            CloseCode::GoingAway => "server shutting down",
            CloseCode::ProtocolError => "websocket protocol error",
            CloseCode::Policy => "policy violation",
            CloseCode::TooLarge => "frame too large",
            CloseCode::Internal => "internal error",
            CloseCode::Drained => "drained: reconnect",
            CloseCode::TryAgainLater => "server full: try again later",
            CloseCode::SlowConsumer => "slow consumer: fell behind retained history",
            CloseCode::Disconnected => "disconnected by the server",
        }
    }

    /// Whether a client should reconnect after this close.
    pub fn should_reconnect(self) -> bool {
        !matches!(
            self,
            CloseCode::Normal | CloseCode::Policy | CloseCode::Disconnected
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for c in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(c.code()), Some(c));
            assert!(c.reason().len() <= 123);
        }
        assert_eq!(CloseCode::from_code(1003), None);
        assert_eq!(CloseCode::SlowConsumer.code(), 4008);
        assert_eq!(CloseCode::Disconnected.code(), 4009);
    }

    #[test]
    fn reconnect_policy() {
        assert!(CloseCode::Drained.should_reconnect());
        assert!(CloseCode::TryAgainLater.should_reconnect());
        assert!(!CloseCode::Disconnected.should_reconnect());
        assert!(!CloseCode::Policy.should_reconnect());
    }
}
