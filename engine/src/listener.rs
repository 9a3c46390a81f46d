//! The listening sockets, each with the dialect of what it accepts and an
//! accept queue sized for reconnect storms, and how the start-up line
//! names them.
//!
//! The standard library listens with a backlog of 128. When a server
//! restarts, every client reconnects at once; connections beyond the
//! backlog have their SYN dropped and the client retries only after a
//! second, then three, then seven. A longer queue (the kernel caps it at
//! `net.core.somaxconn`) lets the I/O threads take them as fast as they
//! can instead.

use std::io;
use std::net::{SocketAddr, TcpListener};

use chatd_core::Dialect;
use socket2::{Domain, Socket, Type};

use std::sync::Arc;

use crate::tls::TlsAcceptor;
use crate::web::WebSettings;

/// Connections the kernel may hold for us before we accept them.
pub const LISTEN_BACKLOG: i32 = 4096;

/// A bound listening socket and the dialect its connections speak. A
/// backend accepts on every one it is given and tags each accepted socket
/// with the listener's dialect ([`crate::hub::Event::Accepted`]).
#[derive(Debug)]
pub struct Listener {
    /// The socket.
    pub socket: TcpListener,
    /// What connections accepted here speak.
    pub dialect: Dialect,
    /// TLS for every connection accepted here, or `None` for plain TCP.
    pub tls: Option<TlsAcceptor>,
    /// For the HTTP listener: its settings (connections speak HTTP first
    /// and `dialect` means nothing until they upgrade).
    pub web: Option<Arc<WebSettings>>,
}

/// Where one listener ended up listening (the port resolved when `:0`
/// was asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// The bound address.
    pub address: SocketAddr,
    /// What its connections speak.
    pub dialect: Dialect,
    /// Whether its connections use TLS.
    pub tls: bool,
    /// The HTTP listener (web client, WebSocket, metrics).
    pub http: bool,
}

/// Names every listener for the start-up line, e.g.
/// `127.0.0.1:9090 (native), 127.0.0.1:6667 (irc), 127.0.0.1:6697 (irc/tls),
/// 127.0.0.1:8080 (http), 127.0.0.1:8443 (https)`. The native listener
/// comes first, so tools that take the first address of the line keep
/// finding it; [`parse_listening`] reads the list back.
pub fn describe_listening(listening: &[Listening]) -> String {
    listening
        .iter()
        .map(|l| match (l.http, l.tls) {
            (true, false) => format!("{} (http)", l.address),
            (true, true) => format!("{} (https)", l.address),
            (false, tls) => {
                let transport = if tls { "/tls" } else { "" };
                format!("{} ({}{transport})", l.address, l.dialect)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads a [`describe_listening`] list from the start of `text` (what
/// follows `chatd listening on ` in the start-up line), up to the first
/// entry that is not one.
pub fn parse_listening(text: &str) -> Vec<Listening> {
    let mut found = Vec::new();
    let mut rest = text;
    loop {
        let Some((address, after)) = rest.split_once(" (") else {
            return found;
        };
        let Some((name, after)) = after.split_once(')') else {
            return found;
        };
        let (name, tls) = match name.strip_suffix("/tls") {
            Some(name) => (name, true),
            None => (name, false),
        };
        let (dialect, tls, http) = match name {
            "http" => (Some(Dialect::Native), false, true),
            "https" => (Some(Dialect::Native), true, true),
            _ => (
                [Dialect::Native, Dialect::Irc]
                    .into_iter()
                    .find(|dialect| dialect.name() == name),
                tls,
                false,
            ),
        };
        let (Ok(address), Some(dialect)) = (address.parse(), dialect) else {
            return found;
        };
        found.push(Listening {
            address,
            dialect,
            tls,
            http,
        });
        match after.strip_prefix(", ") {
            Some(next) => rest = next,
            None => return found,
        }
    }
}

/// Binds and listens on `address` with [`LISTEN_BACKLOG`].
pub fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    // As the standard library does on Unix: a restarted server may bind
    // while its old connections sit in TIME_WAIT. (On Windows the option
    // would let another process take the port.)
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::Duration;

    /// Linux only: how a full accept queue treats a connect (the SYN is
    /// dropped, so the connect stalls) is the kernel's.
    #[cfg(target_os = "linux")]
    #[test]
    fn many_more_than_128_connections_wait_to_be_accepted() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).expect("listens");
        let address = listener.local_addr().unwrap();
        // Nobody accepts: each connect completes only if the queue has room.
        let waiting: Vec<TcpStream> = (0..600)
            .map(|i| {
                TcpStream::connect_timeout(&address, Duration::from_millis(500))
                    .unwrap_or_else(|error| panic!("connect {i} stalled: {error}"))
            })
            .collect();
        let (_, peer) = listener.accept().expect("the first is there");
        assert_eq!(peer, waiting[0].local_addr().unwrap());
    }

    #[test]
    fn the_start_up_description_reads_back() {
        let listening = [
            Listening {
                address: "127.0.0.1:9090".parse().unwrap(),
                dialect: Dialect::Native,
                tls: false,
                http: false,
            },
            Listening {
                address: "[::1]:6667".parse().unwrap(),
                dialect: Dialect::Irc,
                tls: false,
                http: false,
            },
            Listening {
                address: "127.0.0.1:6697".parse().unwrap(),
                dialect: Dialect::Irc,
                tls: true,
                http: false,
            },
            Listening {
                address: "127.0.0.1:8080".parse().unwrap(),
                dialect: Dialect::Native,
                tls: false,
                http: true,
            },
            Listening {
                address: "127.0.0.1:8443".parse().unwrap(),
                dialect: Dialect::Native,
                tls: true,
                http: true,
            },
        ];
        let line = format!(
            "{}: backend poll (epoll), 2 I/O threads",
            describe_listening(&listening)
        );
        assert_eq!(
            line,
            "127.0.0.1:9090 (native), [::1]:6667 (irc), 127.0.0.1:6697 (irc/tls), 127.0.0.1:8080 (http), 127.0.0.1:8443 (https): backend poll (epoll), 2 I/O threads"
        );
        assert_eq!(parse_listening(&line), listening);
    }

    #[test]
    fn a_taken_port_is_an_error() {
        let first = listen("127.0.0.1:0".parse().unwrap()).expect("listens");
        let taken = first.local_addr().unwrap();
        assert!(listen(taken).is_err());
    }
}
