//! The HTTP listener's transport layer: one HTTP request per connection,
//! answered with a page, a query's answer from the hub, or an upgrade to a
//! WebSocket that carries a dialect's lines, one frame per line.
//!
//! Like TLS, it is sans-IO and lives once in the engine: a backend feeds
//! it what the socket (or TLS) delivered and sends what it queues
//! ([`WebState::wire`]). It sits above TLS in the [`crate::transport`]
//! stack, so `wss://` is the same code over a TLS session.
//!
//! To the core an HTTP connection is admitted at accept
//! ([`chatd_core::Server::accept_web`], under the same limits as any
//! connection) and becomes a session of the route's dialect when it
//! upgrades ([`WebSignal::Upgraded`]).

pub mod assets;
pub mod frame;
pub mod http;

use std::sync::Arc;
use std::time::Duration;

use chatd_core::{Dialect, Priority};
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use crate::out_queue::OutQueue;
use frame::{FrameReader, Incoming};
pub use http::WebQuery;

/// How long a connection may take to send its request head, by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes framed ahead of the socket at once: what the layer holds
/// beyond the connection's queue, where the slow-consumer rule counts.
const FILL_CHUNK: usize = 16 * 1024;

/// What the HTTP listener needs to know, shared by its connections.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Origins besides the server's own that may open a WebSocket
    /// (`scheme://host[:port]`, lower case, no trailing slash).
    pub allowed_origins: Vec<String>,
    /// The longest line the core takes (`max_line_bytes`): the longest
    /// message a WebSocket passes on whole.
    pub max_line: usize,
    /// How long a connection may take to send its request head (a
    /// slowloris is cut then, and the core forgets it).
    pub request_timeout: Duration,
    /// The listener is bound to a loopback address: requests must name a
    /// loopback host (or one of `allowed_origins`) in `Host`, so a page
    /// whose name was made to resolve to 127.0.0.1 (DNS rebinding) cannot
    /// reach it as its own origin.
    pub loopback_only: bool,
}

impl WebSettings {
    /// Settings allowing `allowed_origins` (normalised here) besides the
    /// server's own, for lines of at most `max_line` bytes.
    pub fn new(allowed_origins: &[String], max_line: usize) -> Self {
        Self {
            allowed_origins: allowed_origins
                .iter()
                .map(|origin| normalise_origin(origin))
                .collect(),
            max_line,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            loopback_only: false,
        }
    }

    /// Whether a request's `Host` is one this listener answers: any, unless
    /// it is bound to loopback ([`WebSettings::loopback_only`]).
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        if !self.loopback_only {
            return true;
        }
        let Some(host) = host else {
            return false;
        };
        let name = host_name(host).to_ascii_lowercase();
        let loopback = name == "localhost"
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        loopback
            || self
                .allowed_origins
                .iter()
                .any(|origin| host_name(origin.split("://").nth(1).unwrap_or("")) == name)
    }

    /// Whether a browser page from `origin` may open a WebSocket on a
    /// connection whose `Host` header is `host`: the server's own origin
    /// (same scheme, host and port), or one in the list.
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>, encrypted: bool) -> bool {
        let origin = normalise_origin(origin);
        let scheme = if encrypted { "https" } else { "http" };
        if host.is_some_and(|host| origin == format!("{scheme}://{}", host.to_ascii_lowercase())) {
            return true;
        }
        self.allowed_origins.contains(&origin)
    }
}

/// The host of `host[:port]` (an IPv6 literal keeps its brackets).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// An origin as compared: lower case, no trailing slash.
fn normalise_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Something the engine must tell the hub about a web connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebSignal {
    /// It upgraded to a WebSocket speaking this dialect: the core makes it
    /// a session now.
    Upgraded(Dialect),
    /// It asks a question the hub answers ([`WebQuery`]).
    Query(WebQuery),
}

/// What one read amounted to, in this layer.
#[derive(Debug, Default)]
pub struct WebReceived {
    /// Lines for the core, each ending in LF.
    pub lines: Vec<u8>,
    /// For the hub, before the lines.
    pub signal: Option<WebSignal>,
    /// The connection is over (an answer sent, the client closed, bad
    /// input): send what the layer queued, then close. Says why, for the log.
    pub ending: Option<String>,
}

/// Where a web connection is.
#[derive(Debug)]
enum Phase {
    /// Reading the request head: the bytes so far.
    Request(Vec<u8>),
    /// The hub answers a query: its bytes go out as they are.
    Answering,
    /// A WebSocket.
    Socket {
        reader: FrameReader,
        /// Binary frames (`binary.ircv3.net`) rather than text.
        binary: bool,
        /// Our close frame is queued: nothing is framed after it.
        close_sent: bool,
    },
    /// Over: what the layer queued goes out, everything else is dropped.
    Ended,
}

/// One HTTP connection's state in this layer.
#[derive(Debug)]
pub struct WebState {
    phase: Phase,
    settings: Arc<WebSettings>,
    /// Bytes for the socket (or TLS below): answers and frames, in order.
    pub wire: OutQueue,
}

impl WebState {
    /// A connection that has sent nothing yet.
    pub fn new(settings: Arc<WebSettings>) -> Self {
        Self {
            phase: Phase::Request(Vec::new()),
            settings,
            wire: OutQueue::default(),
        }
    }

    /// Whether the request head is still awaited (the connection's
    /// handshake deadline applies).
    pub fn is_handshaking(&self) -> bool {
        matches!(self.phase, Phase::Request(_))
    }

    /// Whether bytes of this layer wait for the socket.
    pub fn wants_write(&self) -> bool {
        !self.wire.is_empty()
    }

    /// Takes what the transport below delivered.
    /// `encrypted`: it came over TLS (the origin a page must have).
    pub fn received(&mut self, bytes: &[u8], encrypted: bool) -> WebReceived {
        let mut received = WebReceived::default();
        match &mut self.phase {
            Phase::Request(head) => {
                head.extend_from_slice(bytes);
                match http::route(head, &self.settings, encrypted) {
                    Ok(None) => {}
                    Ok(Some((route, used))) => {
                        let rest = head.split_off(used);
                        self.routed(route, &rest, &mut received);
                    }
                    Err(refusal) => {
                        received.ending = Some(status_line(&refusal));
                        self.end_with(&refusal);
                    }
                }
            }
            Phase::Socket { .. } => self.read_frames(bytes, &mut received),
            Phase::Answering | Phase::Ended => {}
        }
        received
    }

    fn routed(&mut self, route: http::Route, rest: &[u8], received: &mut WebReceived) {
        match route {
            http::Route::Answer(answer) => {
                received.ending = Some(status_line(&answer));
                self.end_with(&answer);
            }
            http::Route::Query(query) => {
                self.phase = Phase::Answering;
                received.signal = Some(WebSignal::Query(query));
            }
            http::Route::Upgrade {
                dialect,
                binary,
                answer,
            } => {
                self.wire.push(&answer, Priority::Normal);
                self.phase = Phase::Socket {
                    reader: FrameReader::default(),
                    binary,
                    close_sent: false,
                };
                received.signal = Some(WebSignal::Upgraded(dialect));
                if !rest.is_empty() {
                    self.read_frames(rest, received);
                }
            }
        }
    }

    /// Queues `bytes` as the last thing this connection sends.
    fn end_with(&mut self, bytes: &[u8]) {
        self.wire.push(bytes, Priority::Normal);
        self.phase = Phase::Ended;
    }

    fn read_frames(&mut self, bytes: &[u8], received: &mut WebReceived) {
        let Phase::Socket {
            reader,
            binary,
            close_sent,
        } = &mut self.phase
        else {
            return;
        };
        let mut replies = Vec::new();
        let mut closed_by_client = None;
        let lines = &mut received.lines;
        let result = reader.read(
            bytes,
            self.settings.max_line,
            *binary,
            |incoming| match incoming {
                Incoming::Line(line) | Incoming::TooLong(line) => {
                    lines.extend_from_slice(&line);
                    lines.push(b'\n');
                }
                Incoming::Ping(payload) => {
                    frame::write_frame(
                        &mut replies,
                        OpCode::Control(tungstenite::protocol::frame::coding::Control::Pong),
                        &payload,
                    );
                }
                Incoming::Close(code) => closed_by_client = Some(code),
            },
        );
        // Pongs only while the client reads what it is sent: one that
        // pings without reading would otherwise fill memory with pongs the
        // slow-consumer rule never sees. RFC 6455 (5.5.3) lets a pong
        // answer only the latest ping anyway.
        if !replies.is_empty() && !*close_sent && self.wire.queued() < FILL_CHUNK {
            self.wire.push(&replies, Priority::Normal);
        }
        let ending = match (result, closed_by_client) {
            (Err(error), _) => {
                let mut close = Vec::new();
                frame::write_close(&mut close, error.close_code(), error.reason());
                Some((close, error.to_string()))
            }
            (Ok(()), Some(code)) => {
                // Echo the client's code (RFC 6455, 5.5.1) when it may be
                // sent; otherwise say normal.
                let mut close = Vec::new();
                let code = code
                    .filter(|&code| frame::sendable_close_code(code))
                    .map_or(CloseCode::Normal, CloseCode::from);
                frame::write_close(&mut close, code, "");
                Some((close, "the client closed the WebSocket".to_string()))
            }
            (Ok(()), None) => None,
        };
        if let Some((close, why)) = ending {
            if *close_sent {
                self.phase = Phase::Ended;
            } else {
                self.end_with(&close);
            }
            received.ending = Some(why);
        }
    }

    /// Moves what the core queued in `out` into [`WebState::wire`], framed
    /// for a WebSocket or as is for a query's answer, at most about
    /// [`FILL_CHUNK`] ahead of the socket. With `closing`, a WebSocket's
    /// close frame follows its last line.
    pub fn fill(&mut self, out: &mut OutQueue, closing: bool) {
        match &mut self.phase {
            Phase::Answering => {
                while self.wire.queued() < FILL_CHUNK {
                    let Some(batch) = out.take_batch() else {
                        break;
                    };
                    let len = batch.unsent().len();
                    self.wire.push(batch.unsent(), Priority::Normal);
                    out.written(batch, len);
                }
            }
            Phase::Socket {
                binary, close_sent, ..
            } => {
                if *close_sent {
                    discard(out);
                    return;
                }
                let opcode = OpCode::Data(if *binary { Data::Binary } else { Data::Text });
                while self.wire.queued() < FILL_CHUNK {
                    let Some(batch) = out.take_batch() else {
                        break;
                    };
                    let used = frame_lines(batch.unsent(), opcode, &mut self.wire);
                    out.written(batch, used);
                }
                if closing && out.is_empty() {
                    let mut close = Vec::new();
                    frame::write_close(&mut close, CloseCode::Normal, "");
                    self.wire.push(&close, Priority::Normal);
                    *close_sent = true;
                }
            }
            Phase::Request(_) | Phase::Ended => discard(out),
        }
    }
}

/// Frames each whole line at the front of `bytes` (LF or CR LF ended)
/// into `wire`, until it holds [`FILL_CHUNK`]; returns the bytes used.
/// Each frame is written straight into the queue: its header, then the
/// line, with no buffer between (this runs once per recipient of every
/// line).
fn frame_lines(bytes: &[u8], opcode: OpCode, wire: &mut OutQueue) -> usize {
    let mut used = 0;
    while used < bytes.len() && wire.queued() < FILL_CHUNK {
        let rest = &bytes[used..];
        let (line, len) = match memchr::memchr(b'\n', rest) {
            Some(end) => (&rest[..end], end + 1),
            // The core queues whole lines; a tail without LF is one anyway.
            None => (rest, rest.len()),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut header = [0u8; frame::MAX_SERVER_HEADER];
        let header_len = frame::write_header(&mut header, opcode, line.len());
        wire.push(&header[..header_len], Priority::Normal);
        wire.push(line, Priority::Normal);
        used += len;
    }
    used
}

/// Drops everything queued: nothing more goes out this connection.
fn discard(out: &mut OutQueue) {
    while let Some(batch) = out.take_batch() {
        let len = batch.unsent().len();
        out.written(batch, len);
    }
}

/// The first line of an HTTP answer, for the log.
fn status_line(answer: &[u8]) -> String {
    let end = answer
        .iter()
        .position(|&b| b == b'\r')
        .unwrap_or(answer.len());
    String::from_utf8_lossy(&answer[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handshake of RFC 6455's example (section 1.3).
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn settings() -> Arc<WebSettings> {
        Arc::new(WebSettings::new(
            &["https://Friends.example/".to_string()],
            64,
        ))
    }

    fn upgrade_request(path: &str, extra: &str) -> Vec<u8> {
        format!(
            "GET {path} HTTP/1.1\r\nHost: chat.example:8080\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
        .into_bytes()
    }

    fn masked(payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0x81, 0x80 | payload.len() as u8, 1, 2, 3, 4];
        frame.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
        );
        frame
    }

    fn wire_text(web: &mut WebState) -> String {
        let mut sent = Vec::new();
        web.wire.flush(&mut sent).expect("into a Vec");
        String::from_utf8_lossy(&sent).into_owned()
    }

    #[test]
    fn an_upgrade_answers_101_and_frames_behind_the_head_are_lines() {
        let mut web = WebState::new(settings());
        let mut request = upgrade_request("/ws", "Origin: http://chat.example:8080\r\n");
        request.extend(masked(b"hello"));
        // The head arrives in two reads.
        let first = web.received(&request[..20], false);
        assert!(first.signal.is_none() && first.lines.is_empty());
        assert!(web.is_handshaking());
        let rest = web.received(&request[20..], false);
        assert_eq!(rest.signal, Some(WebSignal::Upgraded(Dialect::Native)));
        assert_eq!(rest.lines, b"hello\n");
        assert!(!web.is_handshaking());
        let answer = wire_text(&mut web);
        assert!(answer.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(answer.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")));
        // The core's lines go out one text frame each, without line ends.
        let mut out = OutQueue::default();
        out.push(b"* one\n* two\r\n", Priority::Normal);
        web.fill(&mut out, true);
        assert!(out.is_empty());
        let mut sent = Vec::new();
        web.wire.flush(&mut sent).unwrap();
        assert_eq!(
            sent,
            [
                &[0x81, 5][..],
                b"* one",
                &[0x81, 5],
                b"* two",
                &[0x88, 2, 0x03, 0xe8],
            ]
            .concat()
        );
        // After the close frame nothing more is framed.
        out.push(b"late\n", Priority::Normal);
        web.fill(&mut out, true);
        assert!(out.is_empty() && web.wire.is_empty());
    }

    #[test]
    fn origins_other_than_our_own_and_the_allowed_get_403() {
        for (origin, allowed) in [
            ("http://chat.example:8080", true),
            ("HTTP://CHAT.EXAMPLE:8080", true),
            ("https://friends.example", true),
            ("https://chat.example:8080", false),
            ("http://evil.example", false),
            ("null", false),
        ] {
            let mut web = WebState::new(settings());
            let request = upgrade_request("/ws", &format!("Origin: {origin}\r\n"));
            let received = web.received(&request, false);
            let answer = wire_text(&mut web);
            if allowed {
                assert!(answer.starts_with("HTTP/1.1 101"), "{origin}: {answer}");
            } else {
                assert!(
                    answer.starts_with("HTTP/1.1 403 Forbidden"),
                    "{origin}: {answer}"
                );
                assert!(received.ending.is_some() && received.signal.is_none());
            }
        }
    }

    #[test]
    fn a_loopback_listener_answers_loopback_hosts_only() {
        let settings = Arc::new(WebSettings {
            loopback_only: true,
            ..(*settings()).clone()
        });
        for (host, answered) in [
            ("localhost:8080", true),
            ("127.0.0.1:8080", true),
            ("127.9.9.9", true),
            ("[::1]:8080", true),
            ("friends.example", true),
            ("evil.example:8080", false),
            ("192.168.1.5:8080", false),
            ("[::2]:8080", false),
        ] {
            let mut web = WebState::new(settings.clone());
            let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");
            let received = web.received(request.as_bytes(), false);
            assert_eq!(received.signal.is_some(), answered, "{host}");
            if !answered {
                assert!(wire_text(&mut web).starts_with("HTTP/1.1 421 "), "{host}");
            }
        }
        let mut web = WebState::new(settings);
        web.received(b"GET / HTTP/1.1\r\n\r\n", false);
        assert!(wire_text(&mut web).starts_with("HTTP/1.1 421 "), "no Host");
    }

    #[test]
    fn irc_subprotocols_pick_frames_and_the_dialect() {
        let mut web = WebState::new(settings());
        let request = upgrade_request(
            "/irc",
            "Sec-WebSocket-Protocol: foo, binary.ircv3.net, text.ircv3.net\r\n",
        );
        let received = web.received(&request, false);
        assert_eq!(received.signal, Some(WebSignal::Upgraded(Dialect::Irc)));
        assert!(wire_text(&mut web).contains("Sec-WebSocket-Protocol: binary.ircv3.net\r\n"));
        let mut out = OutQueue::default();
        out.push(b":s 001 n :hi\r\n", Priority::Normal);
        web.fill(&mut out, false);
        let mut sent = Vec::new();
        web.wire.flush(&mut sent).unwrap();
        assert_eq!(sent[0], 0x82, "binary.ircv3.net: binary frames");
    }

    #[test]
    fn bad_requests_get_a_clear_answer_and_end() {
        let cases: [(&[u8], &str); 6] = [
            (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", "405 Method Not Allowed"),
            (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", "404 Not Found"),
            (b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", "426 Upgrade Required"),
            (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", "400 Bad Request"),
            (
                b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
                "400 Bad Request",
            ),
            (
                b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                "426 Upgrade Required",
            ),
        ];
        for (request, status) in cases {
            let mut web = WebState::new(settings());
            let received = web.received(request, false);
            let answer = wire_text(&mut web);
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{answer}"
            );
            assert!(received.ending.is_some());
            // Whatever comes after is ignored.
            let more = web.received(b"GET / HTTP/1.1\r\n\r\n", false);
            assert!(more.lines.is_empty() && more.signal.is_none() && web.wire.is_empty());
        }
        let mut web = WebState::new(settings());
        let long = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n",
            "a".repeat(http::MAX_REQUEST_HEAD)
        );
        web.received(long.as_bytes(), false);
        assert!(wire_text(&mut web).starts_with("HTTP/1.1 431 "));
    }

    #[test]
    fn pages_and_queries() {
        let mut web = WebState::new(settings());
        let received = web.received(b"GET /app.js?v=1 HTTP/1.1\r\nHost: x\r\n\r\n", false);
        let answer = wire_text(&mut web);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(answer.contains("Content-Type: text/javascript"));
        assert!(answer.contains("Content-Security-Policy: default-src 'self'"));
        assert!(received.ending.is_some());
        let mut web = WebState::new(settings());
        let head = web.received(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", false);
        assert!(head.ending.is_some());
        assert!(
            wire_text(&mut web).ends_with("\r\n\r\n"),
            "no body for HEAD"
        );
        // A query waits for the hub, whose answer goes out as it is.
        let mut web = WebState::new(settings());
        let received = web.received(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", false);
        assert_eq!(received.signal, Some(WebSignal::Query(WebQuery::Metrics)));
        assert!(received.ending.is_none());
        let mut out = OutQueue::default();
        out.push(b"HTTP/1.1 200 OK\r\n\r\nchatd_up 1\n", Priority::Normal);
        web.fill(&mut out, true);
        assert_eq!(wire_text(&mut web), "HTTP/1.1 200 OK\r\n\r\nchatd_up 1\n");
    }

    #[test]
    fn a_client_that_pings_without_reading_gets_a_bounded_queue_of_pongs() {
        let mut web = WebState::new(settings());
        web.received(&upgrade_request("/ws", ""), false);
        let ping = [&[0x89, 0x80 | 125, 0, 0, 0, 0][..], &[b'p'; 125]].concat();
        for _ in 0..10_000 {
            web.received(&ping, false);
        }
        assert!(
            web.wire.queued() < FILL_CHUNK + 200,
            "{}",
            web.wire.queued()
        );
        // A close code that may not be sent is answered as normal.
        let close = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xed];
        web.wire = OutQueue::default();
        assert!(web.received(&close, false).ending.is_some());
        let mut sent = Vec::new();
        web.wire.flush(&mut sent).unwrap();
        assert_eq!(sent, [0x88, 2, 0x03, 0xe8]);
    }

    #[test]
    fn duplicate_headers_bad_keys_and_head_queries_are_refused() {
        let two_origins = "Origin: http://chat.example:8080\r\nOrigin: http://evil.example\r\n";
        let bad_key = String::from_utf8(upgrade_request("/ws", ""))
            .unwrap()
            .replace(KEY, &"!".repeat(24))
            .into_bytes();
        for (request, status) in [
            (upgrade_request("/ws", two_origins), "400"),
            (bad_key, "400"),
            (b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), "405"),
        ] {
            let mut web = WebState::new(settings());
            web.received(&request, false);
            let answer = wire_text(&mut web);
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status} ")),
                "{answer}"
            );
        }
    }

    #[test]
    fn pings_are_answered_and_a_client_close_is_echoed() {
        let mut web = WebState::new(settings());
        web.received(&upgrade_request("/ws", ""), false);
        wire_text(&mut web);
        let ping = [0x89, 0x82, 0, 0, 0, 0, b'h', b'i'];
        let received = web.received(&ping, false);
        assert!(received.ending.is_none());
        let mut sent = Vec::new();
        web.wire.flush(&mut sent).unwrap();
        assert_eq!(sent, [0x8a, 2, b'h', b'i']);
        let close = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe9];
        let received = web.received(&close, false);
        assert!(received.ending.is_some());
        let mut sent = Vec::new();
        web.wire.flush(&mut sent).unwrap();
        assert_eq!(sent, [0x88, 2, 0x03, 0xe9]);
    }
}
