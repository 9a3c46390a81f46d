//! A server whose log pipe closes (the collector reading its stderr died)
//! keeps serving: a log line that cannot be written is lost, not fatal.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use chatd_engine::listener::parse_listening;

const CHATD: &str = env!("CARGO_BIN_EXE_chatd");

#[test]
fn a_closed_log_pipe_does_not_stop_the_server() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(CHATD)
        .args(common::SERVE_NATIVE_ONLY)
        .args(["--tls-bind", "127.0.0.1:0", "--tls-self-signed"])
        .args(["--threads", "1", "--no-persist", "--data-dir"])
        .arg(data.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chatd starts");
    let mut log = BufReader::new(child.stderr.take().expect("stderr"));
    let mut listening = Vec::new();
    let mut line = String::new();
    // Up to the last line start-up writes (the certificate's fingerprint).
    while !line.contains("fingerprint") {
        line.clear();
        assert!(
            log.read_line(&mut line).expect("a log line") > 0,
            "chatd ended"
        );
        if let Some(rest) = line.split("chatd listening on ").nth(1) {
            listening = parse_listening(rest);
        }
    }
    drop(log);
    let plain = listening.iter().find(|l| !l.tls).expect("plain").address;
    let tls = listening.iter().find(|l| l.tls).expect("TLS").address;
    // Garbage on the TLS listener: the server logs that it closes it.
    let mut garbage = TcpStream::connect(tls).expect("connects");
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("sent");
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = garbage.read(&mut [0u8; 64]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().expect("status").is_none(),
        "chatd died when its log pipe was closed"
    );
    let client = TcpStream::connect(plain).expect("still accepts");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut welcome = String::new();
    BufReader::new(client)
        .read_line(&mut welcome)
        .expect("a welcome");
    assert!(welcome.starts_with("* welcome"), "{welcome:?}");
    let _ = child.kill();
    let _ = child.wait();
}
