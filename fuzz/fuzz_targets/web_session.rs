//! The engine's web transport (`chatd_engine::transport::Transport` on the
//! HTTP listener: a request head, then maybe a WebSocket) on arbitrary
//! client bytes, in arbitrary chunks. Checked: nothing panics; lines for
//! the core never exceed what came in plus one LF per byte (each message
//! at most one line); once the connection ends, nothing more reaches the
//! core; queued lines and the close frame go out in any state.
//!
//! The first input byte picks the chunk size (low six bits, plus one) and
//! what comes first (high bits): the fuzzer's bytes alone, or a valid
//! upgrade to `/ws` or to `/irc` (binary frames) before them, so mutations
//! reach the frame reader as often as the request parser.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use chatd_core::Priority;
use chatd_engine::out_queue::OutQueue;
use chatd_engine::transport::Transport;
use chatd_engine::web::WebSettings;
use libfuzzer_sys::fuzz_target;

fn settings() -> &'static Arc<WebSettings> {
    static SETTINGS: OnceLock<Arc<WebSettings>> = OnceLock::new();
    SETTINGS.get_or_init(|| Arc::new(WebSettings::new(&["https://ok.example".into()], 64)))
}

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const UPGRADE_IRC: &str = "GET /irc HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary.ircv3.net\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first & 0x3f) + 1;
    let mut input = match first >> 6 {
        0 => Vec::new(),
        1 | 2 => UPGRADE.as_bytes().to_vec(),
        _ => UPGRADE_IRC.as_bytes().to_vec(),
    };
    input.extend_from_slice(rest);
    let mut transport =
        Transport::new(None, Some(settings()), Instant::now()).expect("no TLS to fail");
    let mut out = OutQueue::default();
    let mut ended = false;
    let mut wire = Vec::new();
    for piece in input.chunks(chunk) {
        let received = transport.received(piece).expect("the web layer never errs");
        if ended {
            assert!(received.plaintext.is_empty() && received.signal.is_none());
        }
        assert!(received.plaintext.len() <= 2 * piece.len() + 70);
        ended |= received.ending.is_some();
        // The core answers as it might: a line back for each one in.
        if !received.plaintext.is_empty() && !ended {
            out.push(b"* echo\n", Priority::Normal);
        }
        transport
            .flush(&mut out, &mut wire, false)
            .expect("into a Vec");
    }
    assert!(transport.flush(&mut out, &mut wire, true).expect("into a Vec"));
    assert!(out.is_empty(), "everything queued went out or was dropped");
});
