//! A test client: a blocking TCP socket from a chosen loopback address that
//! reads whole lines, waiting at most a fixed time for each; plain, a
//! rustls client over it (the harness's TLS mode), or a WebSocket on the
//! HTTP listener (one text frame per line, turned back into lines here).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned};

use socket2::{Domain, Socket, Type};

use crate::driver::{DriverError, Received};

/// How long a client waits for a line before giving up.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client's byte stream: the socket, or TLS over it.
#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    WebSocket(Box<WebSocketLines>),
}

impl Stream {
    #[cfg(unix)]
    fn socket(&self) -> &TcpStream {
        match self {
            Self::Plain(socket) => socket,
            Self::Tls(tls) => tls.get_ref(),
            Self::WebSocket(ws) => ws.socket.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.read(buffer),
            Self::Tls(tls) => tls.read(buffer),
            Self::WebSocket(ws) => ws.read(buffer),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.write(bytes),
            Self::Tls(tls) => tls.write(bytes),
            Self::WebSocket(ws) => ws.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(socket) => socket.flush(),
            Self::Tls(tls) => tls.flush(),
            Self::WebSocket(_) => Ok(()),
        }
    }
}

/// A WebSocket client (tungstenite's) seen as a byte stream of lines:
/// each line written goes as one text frame, each message read comes back
/// as a line.
#[derive(Debug)]
struct WebSocketLines {
    socket: tungstenite::WebSocket<TcpStream>,
    /// Bytes written that do not end a line yet.
    partial: Vec<u8>,
}

impl Read for WebSocketLines {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        use tungstenite::{Error, Message};
        loop {
            let line = match self.socket.read() {
                Ok(Message::Text(text)) => text.as_bytes().to_vec(),
                Ok(Message::Binary(bytes)) => bytes.to_vec(),
                Ok(Message::Close(_)) | Err(Error::ConnectionClosed | Error::AlreadyClosed) => {
                    return Ok(0);
                }
                Ok(_) => continue,
                Err(Error::Io(error)) => return Err(error),
                Err(Error::Protocol(_)) => return Ok(0),
                Err(error) => return Err(io::Error::other(error)),
            };
            // A test's lines are short: one fits the reader's buffer.
            let n = (line.len() + 1).min(buffer.len());
            let mut line = line;
            line.push(b'\n');
            buffer[..n].copy_from_slice(&line[..n]);
            return Ok(n);
        }
    }
}

impl Write for WebSocketLines {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = line[..end].strip_suffix(b"\r").unwrap_or(&line[..end]);
            let message = match std::str::from_utf8(line) {
                Ok(text) => tungstenite::Message::text(text),
                Err(_) => tungstenite::Message::binary(line.to_vec()),
            };
            self.socket.send(message).map_err(io::Error::other)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One connection to the server.
#[derive(Debug)]
pub struct LineClient {
    stream: Stream,
    unread: Vec<u8>,
    eof: bool,
}

impl LineClient {
    /// Connects to `server` from `from` (any local address, e.g. 127.0.0.2).
    pub fn connect(server: SocketAddr, from: IpAddr) -> io::Result<Self> {
        Self::connect_with(server, from, None)
    }

    /// Like [`LineClient::connect`], over TLS with `config` (verifying
    /// the server as [`crate::tls::SERVER_NAME`]). The handshake happens
    /// with the first read or write.
    pub fn connect_tls(
        server: SocketAddr,
        from: IpAddr,
        config: Arc<ClientConfig>,
    ) -> io::Result<Self> {
        let mut client = Self::connect(server, from)?;
        let Stream::Plain(socket) = client.stream else {
            unreachable!("connect makes a plain stream");
        };
        let tls =
            ClientConnection::new(config, crate::tls::server_name()).map_err(io::Error::other)?;
        client.stream = Stream::Tls(Box::new(StreamOwned::new(tls, socket)));
        Ok(client)
    }

    /// Like [`LineClient::connect`], through a WebSocket at `path` (`/ws`
    /// or `/irc`) of the HTTP listener at `server`, asking for
    /// `protocol` if given (e.g. `text.ircv3.net`).
    pub fn connect_websocket(
        server: SocketAddr,
        from: IpAddr,
        path: &str,
        protocol: Option<&str>,
    ) -> io::Result<Self> {
        use tungstenite::client::IntoClientRequest;
        let client = Self::connect(server, from)?;
        let Stream::Plain(socket) = client.stream else {
            unreachable!("connect makes a plain stream");
        };
        let mut request = format!("ws://{server}{path}")
            .into_client_request()
            .map_err(io::Error::other)?;
        if let Some(protocol) = protocol {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                protocol.parse().map_err(io::Error::other)?,
            );
        }
        let kept = socket.try_clone()?;
        let socket = match tungstenite::client(request, socket) {
            Ok((socket, _)) => socket,
            // A refused connection (full, the address's limit, a ban) is
            // answered 503 with the refusal line as its body: the client
            // reads that line, then the end, as over TCP.
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(answer)))
                if answer.status() == 503 =>
            {
                return Ok(Self {
                    stream: Stream::Plain(kept),
                    unread: answer.body().clone().unwrap_or_default(),
                    eof: true,
                });
            }
            Err(error) => return Err(io::Error::other(error)),
        };
        Ok(Self {
            stream: Stream::WebSocket(Box::new(WebSocketLines {
                socket,
                partial: Vec::new(),
            })),
            unread: Vec::new(),
            eof: false,
        })
    }

    /// Like [`LineClient::connect`], with a receive buffer size (small ones
    /// make a client that stops reading fill up quickly).
    pub fn connect_with(
        server: SocketAddr,
        from: IpAddr,
        receive_buffer: Option<usize>,
    ) -> io::Result<Self> {
        let socket = Socket::new(Domain::for_address(server), Type::STREAM, None)?;
        if let Some(size) = receive_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        socket.bind(&SocketAddr::new(from, 0).into())?;
        socket.connect(&server.into())?;
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(LINE_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: Stream::Plain(stream),
            unread: Vec::new(),
            eof: false,
        })
    }

    /// A second handle on the same connection, for sending from another
    /// thread while this one reads.
    /// Plain connections only: TLS state cannot be shared.
    pub fn try_clone_sender(&self) -> io::Result<LineClient> {
        let Stream::Plain(socket) = &self.stream else {
            return Err(io::Error::other("a TLS client has one handle"));
        };
        Ok(Self {
            stream: Stream::Plain(socket.try_clone()?),
            unread: Vec::new(),
            eof: false,
        })
    }

    /// Sends bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Sends one line (LF added).
    pub fn say(&mut self, line: &str) -> io::Result<()> {
        self.send(format!("{line}\n").as_bytes())
    }

    /// The next line, the end of the connection, or nothing within the timeout.
    pub fn next_line(&mut self) -> io::Result<Received> {
        let mut buffer = [0u8; 8192];
        loop {
            if let Some(end) = self.unread.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.unread.drain(..=end).collect();
                return Ok(Received::Line(
                    String::from_utf8_lossy(&line[..end]).into_owned(),
                ));
            }
            if self.eof {
                return Ok(Received::Closed);
            }
            match self.stream.read(&mut buffer) {
                Ok(0) => self.eof = true,
                Ok(n) => self.unread.extend_from_slice(&buffer[..n]),
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(Received::Nothing);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // A reset, or (TLS) the server closed without close_notify:
                // cut off, as a slow consumer or a timed-out handshake is.
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    self.eof = true
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Waits, without reading, until the server has reset or ended the
    /// connection (up to `limit`). A reset shows at once, whatever is left
    /// unread; an end of stream only once the data before it has arrived.
    #[cfg(unix)]
    pub fn wait_closed_unread(&self, limit: Duration) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            // No events asked for: poll reports only errors and hang-ups.
            let mut fds = [PollFd::new(self.stream.socket(), PollFlags::empty())];
            let timeout = Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            });
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => return false,
                Ok(_) => {
                    return fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(error) => panic!("poll failed: {error}"),
            }
        }
    }

    /// Reads lines until one satisfies `wanted`, returning it, or fails
    /// with everything seen if the connection ends or goes quiet first.
    pub fn wait_for(&mut self, wanted: impl Fn(&str) -> bool) -> Result<String, String> {
        let mut seen = Vec::new();
        loop {
            match self.next_line().map_err(|e| e.to_string())? {
                Received::Line(line) if wanted(&line) => return Ok(line),
                Received::Line(line) => seen.push(line),
                other => return Err(format!("{other:?} after {seen:?}")),
            }
        }
    }
}

/// The clients of a socket-based driver, by their name in the transcript.
#[derive(Debug, Default)]
pub struct Clients {
    by_name: HashMap<String, LineClient>,
    /// TLS mode: every client connects over TLS with this config.
    tls: Option<Arc<ClientConfig>>,
    /// WebSocket mode: every client connects through the HTTP listener,
    /// at `/ws` (native) or `/irc` (IRC).
    web: bool,
}

impl Clients {
    /// Clients that all connect over TLS with `config`.
    pub fn over_tls(config: Arc<ClientConfig>) -> Self {
        Self {
            by_name: HashMap::new(),
            tls: Some(config),
            web: false,
        }
    }

    /// Clients that all connect through WebSockets on the HTTP listener.
    pub fn over_web() -> Self {
        Self {
            by_name: HashMap::new(),
            tls: None,
            web: true,
        }
    }

    /// Whether clients connect through WebSockets.
    pub fn web(&self) -> bool {
        self.web
    }

    /// Whether clients connect over TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connects `client`, speaking `dialect`, to `server` from `from`
    /// (`server` is the HTTP listener in the WebSocket mode).
    pub fn connect(
        &mut self,
        client: &str,
        server: SocketAddr,
        from: IpAddr,
        dialect: chatd_core::Dialect,
    ) -> Result<(), DriverError> {
        let connection = match (&self.tls, self.web, dialect) {
            (_, true, chatd_core::Dialect::Native) => {
                LineClient::connect_websocket(server, from, "/ws", None)
            }
            (_, true, chatd_core::Dialect::Irc) => {
                LineClient::connect_websocket(server, from, "/irc", Some("text.ircv3.net"))
            }
            (None, false, _) => LineClient::connect(server, from),
            (Some(config), false, _) => LineClient::connect_tls(server, from, config.clone()),
        };
        let connection = connection.map_err(|error| {
            DriverError(format!("{client} cannot connect from {from}: {error}"))
        })?;
        self.by_name.insert(client.to_owned(), connection);
        Ok(())
    }

    /// Sends bytes from `client`.
    pub fn send(&mut self, client: &str, bytes: &[u8]) -> Result<(), DriverError> {
        self.get(client)?
            .send(bytes)
            .map_err(|error| DriverError(format!("{client} cannot send: {error}")))
    }

    /// The next line `client` received.
    pub fn next_line(&mut self, client: &str) -> Result<Received, DriverError> {
        self.get(client)?
            .next_line()
            .map_err(|error| DriverError(format!("{client} cannot read: {error}")))
    }

    /// `client` hangs up.
    pub fn close(&mut self, client: &str) -> Result<(), DriverError> {
        self.by_name
            .remove(client)
            .map(drop)
            .ok_or_else(|| DriverError(format!("{client} is not connected")))
    }

    /// Everyone hangs up.
    pub fn clear(&mut self) {
        self.by_name.clear();
    }

    fn get(&mut self, client: &str) -> Result<&mut LineClient, DriverError> {
        self.by_name
            .get_mut(client)
            .ok_or_else(|| DriverError(format!("{client} is not connected")))
    }
}
