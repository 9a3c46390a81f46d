//! One connection's transport stack, as both backends keep it: plain TCP,
//! TLS ([`crate::tls`]), the HTTP listener's web layer ([`crate::web`]:
//! a request, then maybe a WebSocket), or the web layer over TLS.
//!
//! Bytes from the socket go up through TLS, then the web layer, and come
//! out as lines for the core (and signals for the hub); the core's lines
//! go down from the connection's [`OutQueue`] through the web layer
//! (framed into its own small queue) and TLS to the socket. The backends
//! only move bytes; what a layer does lives here once (DESIGN.md, 7).

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Instant;

use crate::out_queue::OutQueue;
use crate::tls::{TlsAcceptor, TlsError, TlsSession};
use crate::web::{WebSettings, WebSignal, WebState};

/// A connection's transport: one pointer, so a plain connection (most of
/// them, and the fast path) pays eight bytes for the possibility of layers.
#[derive(Debug, Default)]
pub struct Transport {
    layers: Option<Box<Layers>>,
}

/// The layers of a connection that has any.
#[derive(Debug)]
struct Layers {
    tls: Option<Box<TlsSession>>,
    web: Option<Box<WebState>>,
    /// When the handshakes (TLS, the HTTP request head) must be done by.
    deadline: Option<Instant>,
}

/// What bytes read from the socket meant.
#[derive(Debug, Default)]
pub struct Received {
    /// Lines for the core (may be empty: handshake bytes only).
    pub plaintext: Vec<u8>,
    /// For the hub, ahead of `plaintext` (an upgrade, a query).
    pub signal: Option<WebSignal>,
    /// The peer ended the TLS stream (close_notify): let go now.
    pub peer_closed: bool,
    /// The connection is over but has bytes to send first (an HTTP answer,
    /// a WebSocket close): the core forgets it, the backend sends what the
    /// transport holds, shuts down and lingers, as after a TLS error.
    pub ending: Option<String>,
}

impl Transport {
    /// The transport for a connection accepted at `now` on a listener with
    /// `tls` (`None`: plain) and, for the HTTP listener, `web`.
    pub fn new(
        tls: Option<&TlsAcceptor>,
        web: Option<&Arc<WebSettings>>,
        now: Instant,
    ) -> Result<Self, TlsError> {
        let mut deadline = None;
        let tls = match tls {
            None => None,
            Some(acceptor) => {
                deadline = Some(now + acceptor.handshake_timeout());
                Some(Box::new(acceptor.session()?))
            }
        };
        let web = web.map(|settings| {
            let request_by = now + settings.request_timeout;
            deadline = Some(deadline.map_or(request_by, |d: Instant| d.max(request_by)));
            Box::new(WebState::new(settings.clone()))
        });
        if tls.is_none() && web.is_none() {
            return Ok(Self::default());
        }
        Ok(Self {
            layers: Some(Box::new(Layers { tls, web, deadline })),
        })
    }

    /// A TLS transport around an existing session (the refusal thread).
    pub(crate) fn from_session(session: TlsSession, deadline: Instant) -> Self {
        Self {
            layers: Some(Box::new(Layers {
                tls: Some(Box::new(session)),
                web: None,
                deadline: Some(deadline),
            })),
        }
    }

    /// Whether bytes pass through unchanged (plain TCP): a backend's fast
    /// path.
    pub fn is_plain(&self) -> bool {
        self.layers.is_none()
    }

    /// When the connection is cut off unless its handshakes (TLS, the
    /// HTTP request) are done by then; `None` once they are.
    pub fn handshake_deadline(&self) -> Option<Instant> {
        let layers = self.layers.as_ref()?;
        let handshaking = layers.tls.as_ref().is_some_and(|tls| tls.is_handshaking())
            || layers.web.as_ref().is_some_and(|web| web.is_handshaking());
        layers.deadline.filter(|_| handshaking)
    }

    /// Whether a handshake has outlived its deadline at `now`.
    pub fn handshake_expired(&self, now: Instant) -> bool {
        self.handshake_deadline()
            .is_some_and(|deadline| now >= deadline)
    }

    /// Turns bytes read from the socket into lines for the core.
    pub fn received(&mut self, bytes: &[u8]) -> Result<Received, TlsError> {
        let mut received = Received::default();
        let Some(layers) = self.layers.as_deref_mut() else {
            received.plaintext = bytes.to_vec();
            return Ok(received);
        };
        let decrypted = match layers.tls.as_mut() {
            None => None,
            Some(tls) => {
                let mut buffer = Vec::new();
                received.peer_closed = tls.receive(bytes, &mut buffer)?;
                Some(buffer)
            }
        };
        let Some(web) = layers.web.as_mut() else {
            // TLS alone: the decrypted bytes are the lines, moved, not copied.
            received.plaintext = decrypted.unwrap_or_else(|| bytes.to_vec());
            return Ok(received);
        };
        let plaintext = decrypted.as_deref().unwrap_or(bytes);
        if !plaintext.is_empty() {
            let up = web.received(plaintext, decrypted.is_some());
            received.plaintext = up.lines;
            received.signal = up.signal;
            received.ending = up.ending;
        }
        Ok(received)
    }

    /// Whether output waits for the socket beyond what `out` holds
    /// (ciphertext in rustls, frames or an answer in the web layer).
    pub fn wants_write(&self) -> bool {
        self.layers.as_ref().is_some_and(|layers| {
            layers.tls.as_ref().is_some_and(|tls| tls.wants_write())
                || layers.web.as_ref().is_some_and(|web| web.wants_write())
        })
    }

    /// A readiness backend's flush: writes `out` (through the layers) as
    /// far as the socket takes. With `closing`, the layers' goodbyes (a
    /// WebSocket close, TLS close_notify) follow the last byte. `Ok(true)`:
    /// nothing more can be written now (all written, or the rest waits for
    /// the handshake); `Ok(false)`: the socket would block.
    pub fn flush(
        &mut self,
        out: &mut OutQueue,
        socket: &mut impl Write,
        closing: bool,
    ) -> io::Result<bool> {
        let Some(layers) = self.layers.as_deref_mut() else {
            return out.flush(socket);
        };
        let mut web = layers.web.as_deref_mut();
        let Some(session) = layers.tls.as_deref_mut() else {
            let Some(web) = web else {
                return out.flush(socket);
            };
            loop {
                web.fill(out, closing);
                if !web.wire.flush(socket)? {
                    return Ok(false);
                }
                // All of the web layer's bytes went: frame more, if any.
                if out.is_empty() {
                    return Ok(true);
                }
            }
        };
        loop {
            if session.wants_write() {
                match session.write_tls(socket) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => continue,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(error),
                }
            }
            if seal_next(session, web.as_deref_mut(), out, closing)? {
                continue;
            }
            if closing
                && !session.close_sent
                && (all_sent(web.as_deref(), out) || session.is_handshaking())
            {
                session.close_notify();
                continue;
            }
            return Ok(true);
        }
    }

    /// A completion backend's next send: wire bytes made from `out` (at
    /// most about one TLS record or one fill of the web layer) appended to
    /// `buffer`, plus the layers' goodbyes once `out` is empty when
    /// `closing`. Plain transports use [`OutQueue::take_batch`] instead.
    pub fn next_wire(
        &mut self,
        out: &mut OutQueue,
        closing: bool,
        buffer: &mut Vec<u8>,
    ) -> io::Result<()> {
        let Some(layers) = self.layers.as_deref_mut() else {
            return Ok(());
        };
        let mut web = layers.web.as_deref_mut();
        let Some(session) = layers.tls.as_deref_mut() else {
            if let Some(web) = web {
                web.fill(out, closing);
                while let Some(batch) = web.wire.take_batch() {
                    let len = batch.unsent().len();
                    buffer.extend_from_slice(batch.unsent());
                    web.wire.written(batch, len);
                }
            }
            return Ok(());
        };
        session.drain_into(buffer);
        if buffer.is_empty() {
            seal_next(session, web.as_deref_mut(), out, closing)?;
            if closing && (all_sent(web.as_deref(), out) || session.is_handshaking()) {
                session.close_notify();
            }
            session.drain_into(buffer);
        }
        Ok(())
    }
}

/// Seals the next chunk for TLS: from the web layer's queue (filled from
/// `out` first) if there is one, else from `out`. Returns whether it
/// sealed anything.
fn seal_next(
    session: &mut TlsSession,
    web: Option<&mut WebState>,
    out: &mut OutQueue,
    closing: bool,
) -> io::Result<bool> {
    match web {
        Some(web) => {
            web.fill(out, closing);
            session.seal(&mut web.wire)
        }
        None => session.seal(out),
    }
}

/// Whether everything above TLS went into it: `out`, and the web layer's
/// bytes (its close frame among them when closing).
fn all_sent(web: Option<&WebState>, out: &OutQueue) -> bool {
    out.is_empty() && web.is_none_or(|web| web.wire.is_empty())
}

/// The hub's event for what the web layer of `conn` signalled.
pub fn signal_event(conn: chatd_core::ConnId, signal: WebSignal) -> crate::hub::Event {
    match signal {
        WebSignal::Upgraded(dialect) => crate::hub::Event::Upgraded { conn, dialect },
        WebSignal::Query(query) => crate::hub::Event::WebQuery { conn, query },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_connection_pays_one_pointer_for_its_layers() {
        assert_eq!(
            std::mem::size_of::<Transport>(),
            std::mem::size_of::<usize>()
        );
    }
}
