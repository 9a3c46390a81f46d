//! The connect scenario: N idle connections to one server.
//!
//! Connections come from 127.0.0.1, 127.0.0.2, ... (at most
//! [`PER_SOURCE`] each, well inside the ephemeral port range), and each
//! waits for its welcome line, so the server has really admitted it. Over
//! IRC each registers (NICK, USER) and joins a room of
//! [`IRC_IDLE_ROOM_MEMBERS`], and waits for the end of the room's names
//! (`366`): an idle IRC user is registered and in a channel.
//! Reported: time to connect all, failures, and the server's RSS growth per
//! connection.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use chatd_core::Dialect;

use crate::server::ServerProcess;

/// Connections per loopback source address. Linux hands connect() mostly
/// even ephemeral ports, so one source reaches about 14,000 before the port
/// search gets slow; 4,000 per source keeps it instant.
pub const PER_SOURCE: usize = 4_000;

/// What the scenario measured.
#[derive(Debug, Clone)]
pub struct ConnectReport {
    /// Connections asked for.
    pub requested: usize,
    /// Connections that got their welcome line.
    pub connected: usize,
    /// Connections that failed (refused, reset, no welcome).
    pub failures: usize,
    /// Time from the first connect to the last welcome.
    pub elapsed: Duration,
    /// Server RSS before connecting.
    pub rss_before: u64,
    /// Server RSS with every connection open and idle.
    pub rss_after: u64,
}

impl ConnectReport {
    /// Server RSS growth per connected client, in bytes.
    pub fn rss_per_connection(&self) -> f64 {
        if self.connected == 0 {
            return 0.0;
        }
        (self.rss_after.saturating_sub(self.rss_before)) as f64 / self.connected as f64
    }
}

/// Threads that connect in parallel. Each connection waits for its welcome
/// line, a round trip through the server's core; one thread doing that
/// serially measures the round trip, not how fast the server admits.
pub const CONNECT_THREADS: usize = 4;

/// Members of each room the idle IRC connections join: connection `i`
/// joins `#idle{i / 100}`. One room for all would have the server send
/// every join to every member (19,000 squared over two lines), and the
/// measurement would be of that burst, not of idle connections.
pub const IRC_IDLE_ROOM_MEMBERS: usize = 100;

/// Opens `count` connections speaking `dialect`, keeps them open while
/// measuring, then closes them.
pub fn run(
    server: &ServerProcess,
    count: usize,
    dialect: Dialect,
    progress: bool,
) -> anyhow::Result<ConnectReport> {
    // Let the server settle (allocator warm-up, threads started).
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = server.rss_bytes()?;
    let start = Instant::now();
    let deadline = start + CONNECT_LIMIT;
    let greeting = match dialect {
        Dialect::Native => Greeting::ChatdWelcome,
        Dialect::Irc => Greeting::IrcJoin,
    };
    let attempts = connect_all(server.addr, count, greeting, deadline, progress);
    let elapsed = start.elapsed();
    let failures = attempts.iter().filter(|a| a.is_err()).count();
    let open: Vec<TcpStream> = attempts.into_iter().filter_map(Result::ok).collect();
    // Idle: give the server a moment to finish any deferred work.
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = server.rss_bytes()?;
    let connected = open.len();
    drop(open);
    Ok(ConnectReport {
        requested: count,
        connected,
        failures,
        elapsed,
        rss_before,
        rss_after,
    })
}

/// The longest connecting all clients may take in the connect scenario.
pub const CONNECT_LIMIT: Duration = Duration::from_secs(60);

/// What each new connection does before it counts as connected.
#[derive(Clone, Copy)]
pub enum Greeting<'a> {
    /// Nothing.
    None,
    /// Reads chatd's welcome line.
    ChatdWelcome,
    /// Registers over IRC as `i{n}` and joins `#idle{n / 100}`
    /// ([`IRC_IDLE_ROOM_MEMBERS`]); waits for the room's `366`.
    IrcJoin,
    /// Sends these bytes for client `i` (an IRC server's NICK and USER:
    /// some servers stop accepting while many connections sit
    /// unregistered).
    Send(&'a (dyn Fn(usize) -> Vec<u8> + Sync)),
}

/// Connects `count` clients on [`CONNECT_THREADS`] threads, each greeting
/// the server as `greeting` says. Result `i` is client `i`
/// (its source address is [`source_for`]`(i)`). Clients not yet tried at
/// `deadline` fail without trying: a server that stops accepting must end
/// the run, not leave each remaining connect to time out in turn.
pub fn connect_all(
    server: SocketAddr,
    count: usize,
    greeting: Greeting<'_>,
    deadline: Instant,
    progress: bool,
) -> Vec<std::io::Result<TcpStream>> {
    let done = AtomicUsize::new(0);
    let mut results: Vec<Option<std::io::Result<TcpStream>>> = (0..count).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CONNECT_THREADS)
            .map(|worker| {
                let done = &done;
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    for i in (worker..count).step_by(CONNECT_THREADS) {
                        let stream = if Instant::now() >= deadline {
                            Err(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "not tried: connecting ran out of time",
                            ))
                        } else {
                            match greeting {
                                Greeting::None => connect_from(server, source_for(i)),
                                Greeting::ChatdWelcome => {
                                    connect_and_welcome(server, source_for(i))
                                }
                                Greeting::IrcJoin => connect_and_join_irc(server, i),
                                Greeting::Send(hello) => connect_from(server, source_for(i))
                                    .and_then(|mut stream| {
                                        stream.write_all(&hello(i))?;
                                        Ok(stream)
                                    }),
                            }
                        };
                        mine.push((i, stream));
                        let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if progress && finished.is_multiple_of(1_000) {
                            eprint!("\r  {finished} / {count} connected");
                        }
                    }
                    mine
                })
            })
            .collect();
        for worker in workers {
            let finished = worker.join().unwrap_or_default();
            for (i, result) in finished {
                results[i] = Some(result);
            }
        }
    });
    if progress {
        eprintln!();
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(std::io::Error::other("a connect thread panicked"))))
        .collect()
}

/// The loopback source address for the `i`-th connection.
pub fn source_for(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i / PER_SOURCE) as u8))
}

/// Connects from `source`, with a 5 s read timeout and TCP_NODELAY.
pub fn connect_from(server: SocketAddr, source: IpAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    bind_source(&socket, source)?;
    socket.connect_timeout(&server.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    // Senders write small lines: Nagle plus delayed ACKs would hold them
    // back for tens of milliseconds.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects from `source` and reads chatd's welcome line.
pub fn connect_and_welcome(server: SocketAddr, source: IpAddr) -> std::io::Result<TcpStream> {
    let stream = connect_from(server, source)?;
    // Read byte by byte up to the first LF, so nothing after the welcome
    // is taken from the socket.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        if (&stream).read(&mut byte)? == 0 {
            return Err(std::io::Error::other("closed before the welcome line"));
        }
        line.push(byte[0]);
    }
    if !line.starts_with(b"* welcome") {
        return Err(std::io::Error::other(format!(
            "unexpected first line {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    Ok(stream)
}

/// Connects client `n` from [`source_for`]`(n)`, registers it over IRC as
/// `i{n}` and joins `#idle{n / IRC_IDLE_ROOM_MEMBERS}`; returns once the
/// room's names have ended (`366`), i.e. the server has the user in the
/// room. What arrives after that (later members' joins) stays unread in
/// the socket, as it would for a client that is away.
pub fn connect_and_join_irc(server: SocketAddr, n: usize) -> std::io::Result<TcpStream> {
    let mut stream = connect_from(server, source_for(n))?;
    let room = n / IRC_IDLE_ROOM_MEMBERS;
    stream.write_all(
        format!("NICK i{n}\r\nUSER i{n} 0 * :i{n}\r\nJOIN #idle{room}\r\n").as_bytes(),
    )?;
    // The registration burst (001-005, LUSERS, 422) is a few hundred
    // bytes: read in blocks, keeping the tail in case `366` is cut.
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return Err(std::io::Error::other(format!(
                "closed during registration: {:?}",
                String::from_utf8_lossy(&seen)
            )));
        }
        seen.extend_from_slice(&buffer[..read]);
        if memchr::memmem::find(&seen, b" 366 ").is_some() {
            return Ok(stream);
        }
        if let Some(error) = memchr::memmem::find(&seen, b"ERROR ") {
            return Err(std::io::Error::other(format!(
                "refused: {:?}",
                String::from_utf8_lossy(&seen[error..])
            )));
        }
    }
}

/// Binds the socket to a source address, leaving the port to connect().
///
/// A plain bind to port 0 picks the port at bind time, scanning every bound
/// socket, which crawls after a few thousand. With IP_BIND_ADDRESS_NO_PORT
/// the port is picked at connect time per (source, destination), so each
/// source address gets its own port space.
#[cfg(target_os = "linux")]
fn bind_source(socket: &Socket, source: IpAddr) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a plain setsockopt on a socket we own, with a pointer to a
    // live c_int and its exact size.
    #[allow(unsafe_code)]
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    socket.bind(&SocketAddr::new(source, 0).into())
}

#[cfg(not(target_os = "linux"))]
fn bind_source(socket: &Socket, source: IpAddr) -> std::io::Result<()> {
    if source == IpAddr::V4(Ipv4Addr::LOCALHOST) {
        return Ok(());
    }
    socket.bind(&SocketAddr::new(source, 0).into())
}
