//! The HTTP listener's requests: one request head per connection, read
//! with httparse, routed to a page, a query for the hub, or a WebSocket
//! upgrade; and the answers, written here so every one carries the same
//! headers.

use chatd_core::Dialect;

use super::WebSettings;
use super::assets;

/// The longest request head taken (request line and headers).
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Most headers one request may have.
const MAX_HEADERS: usize = 48;

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// An answer made here and now (a page, an error): send, then close.
    Answer(Vec<u8>),
    /// A question only the hub can answer: send the hub's answer, close.
    Query(WebQuery),
    /// A WebSocket that speaks `dialect`: send `answer` (101), then frames.
    Upgrade {
        /// The dialect of the route (`/ws` native, `/irc` IRC).
        dialect: Dialect,
        /// Binary frames (`binary.ircv3.net`) rather than text.
        binary: bool,
        /// The 101 answer.
        answer: Vec<u8>,
    },
}

/// A request the hub answers, since it needs the core or the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebQuery {
    /// `/metrics`: Prometheus text.
    Metrics,
    /// `/healthz`: the process serves (the hub answered).
    Health,
    /// `/readyz`: history recovered and, clustered, the cluster reachable.
    Ready,
}

/// Reads a request head from `head` (all bytes so far). `Ok(None)`: not
/// complete yet; `Ok(Some((route, used)))`: the route and the bytes the
/// head took (what follows belongs to the WebSocket, if any); `Err`: the
/// answer refusing it (400, 413, ...).
pub fn route(
    head: &[u8],
    settings: &WebSettings,
    encrypted: bool,
) -> Result<Option<(Route, usize)>, Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let used = match request.parse(head) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) if head.len() >= MAX_REQUEST_HEAD => {
            return Err(error(
                431,
                "Request Header Fields Too Large",
                "request head too large",
            ));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(error(
                431,
                "Request Header Fields Too Large",
                "too many headers",
            ));
        }
        Err(cause) => return Err(error(400, "Bad Request", &format!("bad request: {cause}"))),
    };
    if used > MAX_REQUEST_HEAD {
        return Err(error(
            431,
            "Request Header Fields Too Large",
            "request head too large",
        ));
    }
    let method = request.method.unwrap_or("");
    let target = request.path.unwrap_or("");
    let path = target.split(['?', '#']).next().unwrap_or("");
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let head_only = method == "HEAD";
    if !settings.host_allowed(header("Host")) {
        return Err(error(
            421,
            "Misdirected Request",
            "this server answers for localhost only (its HTTP listener is bound to loopback)",
        ));
    }
    // Headers a request may carry once: two (an Origin the browser sent and
    // one a proxy added) could each pass a check meant for the other.
    for once in ["Host", "Origin", "Sec-WebSocket-Key", "Upgrade"] {
        let count = request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(once))
            .count();
        if count > 1 {
            return Err(error(
                400,
                "Bad Request",
                &format!("more than one {once} header"),
            ));
        }
    }
    if method != "GET" && !head_only {
        return Err(answer(
            405,
            "Method Not Allowed",
            &[("Allow", "GET, HEAD")],
            TEXT,
            b"only GET and HEAD are served here\n",
            false,
        ));
    }
    let dialect = match path {
        "/ws" => Some(Dialect::Native),
        "/irc" => Some(Dialect::Irc),
        _ => None,
    };
    if let Some(dialect) = dialect {
        if head_only {
            return Err(error(400, "Bad Request", "a WebSocket is opened with GET"));
        }
        return upgrade(dialect, &header, settings, encrypted).map(|route| Some((route, used)));
    }
    let query = match path {
        "/metrics" => Some(WebQuery::Metrics),
        "/healthz" => Some(WebQuery::Health),
        "/readyz" => Some(WebQuery::Ready),
        _ => None,
    };
    if let Some(query) = query {
        if head_only {
            return Err(answer(
                405,
                "Method Not Allowed",
                &[("Allow", "GET")],
                TEXT,
                b"queries are answered to GET only\n",
                false,
            ));
        }
        return Ok(Some((Route::Query(query), used)));
    }
    let route = match assets::find(path) {
        Some(asset) => Route::Answer(answer(
            200,
            "OK",
            &[("Cache-Control", "no-cache")],
            asset.content_type,
            asset.body,
            head_only,
        )),
        None => Route::Answer(answer(
            404,
            "Not Found",
            &[],
            TEXT,
            format!("no page at {path}\n").as_bytes(),
            head_only,
        )),
    };
    Ok(Some((route, used)))
}

/// Checks a WebSocket upgrade (RFC 6455, 4.2.1) and its origin.
fn upgrade<'a>(
    dialect: Dialect,
    header: &impl Fn(&str) -> Option<&'a str>,
    settings: &WebSettings,
    encrypted: bool,
) -> Result<Route, Vec<u8>> {
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|value| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    };
    if !has_token("Upgrade", "websocket") || !has_token("Connection", "upgrade") {
        return Err(answer(
            426,
            "Upgrade Required",
            &[("Upgrade", "websocket"), ("Connection", "Upgrade")],
            TEXT,
            b"this address takes WebSocket connections only\n",
            false,
        ));
    }
    if header("Sec-WebSocket-Version") != Some("13") {
        return Err(answer(
            426,
            "Upgrade Required",
            &[("Sec-WebSocket-Version", "13")],
            TEXT,
            b"WebSocket version 13 only\n",
            false,
        ));
    }
    let Some(key) = header("Sec-WebSocket-Key").filter(|key| is_websocket_key(key)) else {
        return Err(error(
            400,
            "Bad Request",
            "missing or bad Sec-WebSocket-Key",
        ));
    };
    if let Some(origin) = header("Origin")
        && !settings.origin_allowed(origin, header("Host"), encrypted)
    {
        return Err(error(
            403,
            "Forbidden",
            &format!("origin {origin} may not open a WebSocket here"),
        ));
    }
    // IRCv3's WebSocket subprotocols: binary or text frames, the client's
    // first choice that we know. Without one an IRC client gets text.
    let offered = header("Sec-WebSocket-Protocol").unwrap_or("");
    let protocol = match dialect {
        Dialect::Irc => offered
            .split(',')
            .map(str::trim)
            .find(|p| *p == TEXT_IRC || *p == BINARY_IRC),
        Dialect::Native => None,
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(protocol) = protocol {
        head.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    head.push_str("\r\n");
    Ok(Route::Upgrade {
        dialect,
        binary: protocol == Some(BINARY_IRC),
        answer: head.into_bytes(),
    })
}

/// Whether `key` is a Sec-WebSocket-Key: sixteen bytes in base64 (RFC
/// 6455, 4.1), so 22 base64 characters and `==`.
fn is_websocket_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 24
        && bytes.ends_with(b"==")
        && bytes[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// IRCv3's WebSocket subprotocol with text frames.
const TEXT_IRC: &str = "text.ircv3.net";
/// IRCv3's WebSocket subprotocol with binary frames.
const BINARY_IRC: &str = "binary.ircv3.net";

/// Plain text's content type.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// The content security policy of every answer: the page loads its own
/// script and style only, and talks only to this server.
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// A whole answer: status line, the common headers, `extra`, the body
/// (left out for HEAD), and `Connection: close` (one request per
/// connection).
pub fn answer(
    status: u16,
    reason: &str,
    extra: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nContent-Security-Policy: {CSP}\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n",
        body.len()
    );
    for (name, value) in extra {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// An error answer whose body says why in one line.
pub fn error(status: u16, reason: &str, why: &str) -> Vec<u8> {
    answer(
        status,
        reason,
        &[],
        TEXT,
        format!("{why}\n").as_bytes(),
        false,
    )
}
