//! Accepting connections on a plain blocking thread, one per listener.
//!
//! On IOCP a socket is bound to one completion port for life, so a socket
//! must reach the runtime that will own it before compio attaches it. The
//! acceptor therefore hands the hub unattached std sockets; the owner
//! thread attaches each one (`TcpStream::from_std`) when it adopts it.
//! Accepts are rare next to reads and writes, so one blocking thread costs
//! nothing on the hot path. To stop it, a flag is set and a connection to
//! the listener itself wakes the blocked `accept`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chatd_core::Dialect;
use chatd_engine::accept::AcceptBackoff;
use chatd_engine::hub::{Event, Inbox};
use chatd_engine::listener::Listener;
use chatd_engine::tls::TlsAcceptor;
use chatd_engine::web::WebSettings;

/// A running acceptor thread.
#[derive(Debug)]
pub(crate) struct Acceptor {
    stop: Arc<AtomicBool>,
    wake_addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Starts accepting on `listener`; each socket goes to the hub tagged
    /// with the listener's dialect.
    pub(crate) fn start(listener: Listener, inbox: Arc<Inbox>) -> io::Result<Self> {
        let Listener {
            socket: listener,
            dialect,
            tls,
            web,
        } = listener;
        listener.set_nonblocking(false)?;
        let local = listener.local_addr()?;
        let wake_addr = match local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), local.port())
            }
            _ => local,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("chatd-accept-{dialect}"))
            .spawn(move || {
                let tagged = Tagged { dialect, tls, web };
                accept_loop(&listener, &tagged, &inbox, &stopping);
            })?;
        Ok(Self {
            stop,
            wake_addr,
            thread: Some(thread),
        })
    }

    /// Stops accepting and waits for the thread.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept; the connection is dropped unseen.
        let _ = TcpStream::connect_timeout(&self.wake_addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the acceptor thread panicked");
        }
    }
}

/// What every connection of a listener is tagged with for the hub.
struct Tagged {
    dialect: Dialect,
    tls: Option<TlsAcceptor>,
    web: Option<Arc<WebSettings>>,
}

fn accept_loop(listener: &TcpListener, tagged: &Tagged, inbox: &Inbox, stop: &AtomicBool) {
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                backoff.succeeded();
                inbox.send(Event::Accepted {
                    stream,
                    peer,
                    dialect: tagged.dialect,
                    tls: tagged.tls.clone(),
                    web: tagged.web.clone(),
                });
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                // Out of descriptors and the like: the engine's rule says
                // how long to wait; this thread has nothing else to do.
                let pause = backoff.failed(&error, Instant::now());
                std::thread::sleep(pause);
            }
        }
    }
}
