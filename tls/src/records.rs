//! rustls' unbuffered server connection and the bytes that wait on it: plaintext not
//! yet read, ciphertext not yet written. No I/O here; [`crate::stream`] does that.

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
    WriteTraffic,
};
use rustls::{Error, HandshakeKind};

/// rustls' unbuffered connection, of either side: [`UnbufferedServerConnection`] (what
/// [`crate::accept`] makes) or [`UnbufferedClientConnection`] ([`crate::connect`]).
pub trait Connection: Send + Unpin + 'static {
    /// The side's own state inside rustls.
    type Data;

    /// rustls' `process_tls_records`, which each side has on its own.
    fn process_tls_records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;

    /// Whether the handshake was full or resumed a session; `None` until it is done.
    fn handshake_kind(&self) -> Option<HandshakeKind>;
}

impl Connection for UnbufferedServerConnection {
    type Data = ServerConnectionData;

    fn process_tls_records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ServerConnectionData> {
        (**self).process_tls_records(incoming)
    }

    fn handshake_kind(&self) -> Option<HandshakeKind> {
        (**self).handshake_kind()
    }
}

impl Connection for UnbufferedClientConnection {
    type Data = ClientConnectionData;

    fn process_tls_records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ClientConnectionData> {
        (**self).process_tls_records(incoming)
    }

    fn handshake_kind(&self) -> Option<HandshakeKind> {
        (**self).handshake_kind()
    }
}

/// What the connection can do once rustls has taken all the input it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The handshake needs more of the peer's records.
    Handshaking,
    /// Application data may flow. With [`Seal::Data`], `sealed` bytes of its ciphertext
    /// are at the start of the buffer given, or, when `sealed` is 0, appended to
    /// [`Records::outgoing`] behind records queued before them.
    Open { sealed: usize },
    /// Both sides have sent `close_notify`.
    Closed,
}

/// What to seal once the connection is open.
pub(crate) enum Seal<'a> {
    Nothing,
    /// Application data, sealed into the buffer given when nothing is queued before it.
    Data(&'a [u8], &'a mut [u8]),
    CloseNotify,
}

pub(crate) struct Records<C> {
    conn: C,
    /// Decrypted application data the reader has not taken yet.
    pub(crate) plaintext: Vec<u8>,
    /// Ciphertext the socket has not taken yet, in the order it must go out.
    pub(crate) outgoing: Vec<u8>,
    /// The peer sent `close_notify`: what was read before it is all there is.
    pub(crate) peer_closed: bool,
    /// We sent (queued) `close_notify`: nothing more may be written.
    pub(crate) closed: bool,
}

impl<C: Connection> Records<C> {
    pub(crate) fn connection(&self) -> &C {
        &self.conn
    }

    pub(crate) fn new(conn: C) -> Records<C> {
        Records {
            conn,
            plaintext: Vec::new(),
            outgoing: Vec::new(),
            peer_closed: false,
            closed: false,
        }
    }

    /// Runs rustls over `incoming` (the peer's ciphertext, the undiscarded part of it
    /// first, at the same offsets as in the last call) until it needs more: handshake
    /// records and alerts go to `outgoing`, application data to `plaintext`, and once
    /// open, `seal` is done. Returns how many bytes of the front of `incoming` are done
    /// with (even on error) and where the connection stands.
    pub(crate) fn process(
        &mut self,
        incoming: &mut [u8],
        mut seal: Seal<'_>,
    ) -> (usize, Result<Progress, Error>) {
        let mut consumed = 0;
        loop {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut incoming[consumed..]);
            let step = match state {
                Err(err) => Err(err),
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    let mut step = Ok(None);
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(record) => {
                                consumed += record.discard;
                                self.plaintext.extend_from_slice(record.payload);
                            }
                            Err(err) => {
                                step = Err(err);
                                break;
                            }
                        }
                    }
                    step
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode_into(&mut self.outgoing, |buf| match data.encode(buf) {
                        Ok(n) => Ok(Ok(n)),
                        Err(EncodeError::InsufficientSize(InsufficientSizeError {
                            required_size,
                        })) => Ok(Err(required_size)),
                        Err(EncodeError::AlreadyEncoded) => {
                            Err(Error::General("TLS record encoded twice".into()))
                        }
                    })
                    .map(|()| None)
                }
                // The bytes are in `outgoing`, which is written in order before anything
                // queued later: for rustls they are as good as sent.
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    data.done();
                    Ok(None)
                }
                Ok(ConnectionState::BlockedHandshake) => Ok(Some(Progress::Handshaking)),
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    Ok(None)
                }
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    Ok(Some(Progress::Closed))
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    let seal = std::mem::replace(&mut seal, Seal::Nothing);
                    seal_with(&mut traffic, seal, &mut self.outgoing, &mut self.closed)
                        .map(|sealed| Some(Progress::Open { sealed }))
                }
                // Early data is off (`max_early_data_size` 0), so rustls never offers it.
                Ok(_) => Err(Error::General("unexpected TLS connection state".into())),
            };
            consumed += discard;
            match step {
                Ok(None) => continue,
                Ok(Some(progress)) => return (consumed, Ok(progress)),
                Err(err) => {
                    self.queue_alert(&mut incoming[consumed..]);
                    return (consumed, Err(err));
                }
            }
        }
    }

    /// After an error, the alert rustls queued for the peer, if any, into `outgoing`.
    fn queue_alert(&mut self, incoming: &mut [u8]) {
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut data)) = state {
            let _ = encode_into(&mut self.outgoing, |buf| match data.encode(buf) {
                Ok(n) => Ok(Ok(n)),
                Err(EncodeError::InsufficientSize(size)) => Ok(Err(size.required_size)),
                Err(EncodeError::AlreadyEncoded) => Ok(Ok(0)),
            });
        }
    }
}

/// Does `seal` on an open connection; the length of the ciphertext left in the caller's
/// buffer (0 if none, or if it went to `outgoing`).
fn seal_with<Data>(
    traffic: &mut WriteTraffic<'_, Data>,
    seal: Seal<'_>,
    outgoing: &mut Vec<u8>,
    closed: &mut bool,
) -> Result<usize, Error> {
    let encrypt_error = |err: EncryptError| match err {
        EncryptError::InsufficientSize(size) => Ok(Err(size.required_size)),
        EncryptError::EncryptExhausted => Err(Error::EncryptError),
    };
    match seal {
        Seal::Nothing => Ok(0),
        Seal::CloseNotify => {
            *closed = true;
            encode_into(outgoing, |buf| {
                traffic
                    .queue_close_notify(buf)
                    .map(Ok)
                    .or_else(encrypt_error)
            })?;
            Ok(0)
        }
        // Behind queued records (a key update, say), order decides: append.
        Seal::Data(data, _) if !outgoing.is_empty() => {
            encode_into(outgoing, |buf| {
                traffic.encrypt(data, buf).map(Ok).or_else(encrypt_error)
            })?;
            Ok(0)
        }
        Seal::Data(data, buf) => match traffic.encrypt(data, buf) {
            Ok(n) => Ok(n),
            // The caller's buffer is sized for one record; if not, fall back.
            Err(EncryptError::InsufficientSize(_)) => {
                encode_into(outgoing, |buf| {
                    traffic.encrypt(data, buf).map(Ok).or_else(encrypt_error)
                })?;
                Ok(0)
            }
            Err(_) => Err(Error::EncryptError),
        },
    }
}

/// Appends what `encode` writes to `out`, growing it to the size `encode` asks for
/// (`Ok(Err(size))`) and trying again.
fn encode_into(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<Result<usize, usize>, Error>,
) -> Result<(), Error> {
    let start = out.len();
    let mut room = 512;
    loop {
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(Ok(n)) => {
                out.truncate(start + n);
                return Ok(());
            }
            Ok(Err(required)) if required > room => room = required,
            Ok(Err(_)) => {
                out.truncate(start);
                return Err(Error::General(
                    "TLS record did not fit the size rustls asked for".into(),
                ));
            }
            Err(err) => {
                out.truncate(start);
                return Err(err);
            }
        }
    }
}
