//! The client without a terminal: stdin's lines go to the server, the
//! server's lines go to stdout, unchanged. When stdin ends, a `#ping`
//! barrier makes sure everything sent was answered before exiting.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;

use anyhow::Context;

/// The barrier token; its pong is not printed.
const BARRIER: &str = "chatd-connect-end-of-input";

pub(crate) fn run(addr: &str, nick: Option<&str>) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    let _ = stream.set_nodelay(true);
    let reader = BufReader::new(stream.try_clone().context("cannot clone the socket")?);
    let (finished, done) = mpsc::channel();
    thread::spawn(move || {
        let stdout = io::stdout();
        let barrier = format!("+ pong {BARRIER}");
        for line in reader.lines().map_while(Result::ok) {
            if line == barrier {
                break;
            }
            let mut out = stdout.lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        let _ = finished.send(());
    });
    let mut writer = stream;
    if let Some(nick) = nick {
        writeln!(writer, "#nick {nick}").context("cannot send")?;
    }
    for line in io::stdin().lock().lines() {
        let line = line.context("cannot read stdin")?;
        if writeln!(writer, "{line}").is_err() {
            // The server closed (after #quit, say): what it sent is printed.
            break;
        }
    }
    let _ = writeln!(writer, "#ping {BARRIER}");
    let _ = done.recv();
    Ok(())
}
