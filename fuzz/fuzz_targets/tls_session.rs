//! The engine's TLS transport (`chatd_engine::transport::Transport`, rustls's
//! unbuffered server connection with the engine's own buffers) on
//! arbitrary client bytes, in arbitrary chunks. Checked: nothing panics
//! (debug assertions on, rustls's included); once a call fails the
//! connection is closed as the core closes one, its alert first; plaintext never exceeds what came in; sealing queued lines
//! and close_notify work in any state.
//!
//! The first input byte picks the chunk size (low six bits, plus one) and
//! what comes first (high bits): the fuzzer's bytes alone, a real client's
//! hello before them, or a whole real handshake before them, so mutations
//! reach every state of the handshake and the record layer.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chatd_core::Priority;
use chatd_engine::out_queue::OutQueue;
use chatd_engine::tls::{TlsAcceptor, config};
use chatd_engine::transport::Transport;
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// One certificate and both configs for the whole run.
fn configs() -> &'static (TlsAcceptor, Arc<ClientConfig>) {
    static CONFIGS: OnceLock<(TlsAcceptor, Arc<ClientConfig>)> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let (chain, key) = config::self_signed().expect("a certificate");
        let mut roots = RootCertStore::empty();
        roots.add(chain[0].clone()).expect("a root");
        let server = config::server_config(chain, key).expect("a server config");
        let acceptor = TlsAcceptor::from_config(server, Duration::from_secs(10));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        (acceptor, Arc::new(client))
    })
}

/// Everything the client has to send.
fn flight(client: &mut ClientConnection) -> Vec<u8> {
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).expect("into a Vec");
    }
    wire
}

/// Runs a real handshake to the end; returns whether it completed.
fn handshake(server: &mut Transport, client: &mut ClientConnection, out: &mut OutQueue) -> bool {
    for _ in 0..10 {
        let hello = flight(client);
        if server.received(&hello).is_err() {
            return false;
        }
        let mut answer = Vec::new();
        let _ = server.next_wire(out, false, &mut answer);
        if !answer.is_empty() {
            let mut reader = &answer[..];
            while !reader.is_empty() {
                if client.read_tls(&mut reader).is_err() {
                    return false;
                }
            }
            if client.process_new_packets().is_err() {
                return false;
            }
        }
        if !client.is_handshaking() && server.handshake_deadline().is_none() {
            return true;
        }
    }
    false
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first & 0x3f) + 1;
    let (acceptor, client_config) = configs();
    let mut server = Transport::new(Some(acceptor), None, Instant::now()).expect("a session");
    let mut out = OutQueue::default();
    out.push(b"* welcome, you are guest1 in #general\n", Priority::Normal);
    let name = ServerName::try_from("localhost").expect("a name");
    let mut client = ClientConnection::new(client_config.clone(), name).expect("a client");
    let mut input = Vec::new();
    match first >> 6 {
        1 => input.extend_from_slice(&flight(&mut client)),
        2 | 3 => {
            if !handshake(&mut server, &mut client, &mut out) {
                return;
            }
        }
        _ => {}
    }
    input.extend_from_slice(rest);
    let mut received = 0;
    for piece in input.chunks(chunk) {
        match server.received(piece) {
            Ok(got) => {
                received += got.plaintext.len();
                assert!(received <= input.len(), "more plaintext than input");
                // Lines may leave whenever the session lets them.
                out.push(b"hello\n", Priority::Normal);
                let mut wire = Vec::new();
                server
                    .next_wire(&mut out, false, &mut wire)
                    .expect("sealing never fails on a live session");
                if got.peer_closed {
                    break;
                }
            }
            Err(_) => {
                // Over: the backend closes it as the core would, the
                // alert first (and nothing sealed after it).
                let mut wire = Vec::new();
                server
                    .next_wire(&mut out, true, &mut wire)
                    .expect("a failed session still gives its alert");
                return;
            }
        }
    }
    // The core closes it: what is queued, then close_notify.
    let mut wire = Vec::new();
    let _ = server.next_wire(&mut out, true, &mut wire);
});
