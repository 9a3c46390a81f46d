//! A loopback TCP proxy a test can cut and heal: the link between a chatd
//! node and Redis, to show a node cut off and healed loses nothing and
//! repeats nothing.
//!
//! Cutting closes every connection through it (both ways) and refuses new
//! ones until healed, as a broken link looks to both ends.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A proxy from a loopback port to `target`.
#[derive(Debug)]
pub struct LinkProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    cut: AtomicBool,
    stop: AtomicBool,
    /// Both ends of every connection through the proxy, to cut them.
    live: Mutex<Vec<TcpStream>>,
}

impl LinkProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub fn start(target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(&listener, target, &shared))
        };
        Ok(Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Breaks the link: every connection through it closes, and new ones
    /// are closed at once, until [`Self::heal`].
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        let mut live = self.shared.live.lock().unwrap_or_else(|p| p.into_inner());
        for stream in live.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Restores the link: new connections go through again.
    pub fn heal(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the acceptor so it sees the stop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if shared.cut.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let (Ok(client_copy), Ok(server_copy)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        if let Ok(mut live) = shared.live.lock()
            && let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone())
        {
            live.push(a);
            live.push(b);
        }
        std::thread::spawn(move || pump(client, server_copy));
        std::thread::spawn(move || pump(server, client_copy));
    }
}

/// Copies one direction until either side closes, then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_until_cut_refuses_while_cut_and_forwards_again_when_healed() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in echo.incoming().map_while(Result::ok) {
                std::thread::spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let mut writer = stream;
                    let _ = std::io::copy(&mut reader, &mut writer);
                });
            }
        });
        let proxy = LinkProxy::start(target).unwrap();
        let round_trip = |stream: &mut TcpStream| -> io::Result<Vec<u8>> {
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            stream.write_all(b"ping")?;
            let mut answer = [0u8; 4];
            stream.read_exact(&mut answer)?;
            Ok(answer.to_vec())
        };
        let mut first = TcpStream::connect(proxy.addr()).unwrap();
        assert_eq!(round_trip(&mut first).unwrap(), b"ping");

        proxy.cut();
        assert!(
            round_trip(&mut first).is_err(),
            "a cut link still carried bytes"
        );
        let mut during = TcpStream::connect(proxy.addr()).unwrap();
        assert!(
            round_trip(&mut during).is_err(),
            "a new connection went through a cut link"
        );

        proxy.heal();
        let mut after = TcpStream::connect(proxy.addr()).unwrap();
        assert_eq!(round_trip(&mut after).unwrap(), b"ping");
    }
}
