//! The listening socket, with an accept queue sized for reconnect storms.
//!
//! The standard library listens with a backlog of 128. When a server
//! restarts, every client reconnects at once; connections beyond the
//! backlog have their SYN dropped and the client retries only after a
//! second, then three, then seven. A longer queue (the kernel caps it at
//! `net.core.somaxconn`) lets the I/O threads take them as fast as they
//! can instead.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Socket, Type};

/// Connections the kernel may hold for us before we accept them.
pub const LISTEN_BACKLOG: i32 = 4096;

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
    fn a_taken_port_is_an_error() {
        let first = listen("127.0.0.1:0".parse().unwrap()).expect("listens");
        let taken = first.local_addr().unwrap();
        assert!(listen(taken).is_err());
    }
}
