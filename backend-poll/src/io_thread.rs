//! One I/O thread: a `Poller`, the connections it owns, and (on thread 0)
//! the listeners, one per dialect.
//!
//! Each turn: wait for readiness, read what is ready into the thread's one
//! read buffer and hand it to the hub, run the hub's commands, then write
//! every connection that got output in one vectored write each, looking
//! at the hub's new commands every 128 writes. Writable
//! interest is registered only while output is waiting. Work per turn is
//! bounded: a few reads per connection, a bounded number of accepts and of
//! the hub's commands.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use chatd_core::{ConnId, Dialect, Priority};
use chatd_engine::SHUTDOWN_FLUSH_LIMIT;
use chatd_engine::accept::AcceptBackoff;
use chatd_engine::closing::{self, Ending};
use chatd_engine::hub::{COMMANDS_PER_TURN, Command, Event, Inbox, Mailbox, local_recipients};
use chatd_engine::listener::Listener;
use chatd_engine::tls::TlsAcceptor;
use chatd_engine::transport::{Transport, signal_event};
use chatd_engine::web::WebSettings;
use polling::{Event as Interest, Events, PollMode, Poller};

use chatd_engine::out_queue::OutQueue;

/// The first listener's key; listener `i` has `FIRST_LISTENER_KEY - i`.
/// Connection keys are their ids, which never come near these values.
/// (`usize::MAX` is reserved by `polling`.)
const FIRST_LISTENER_KEY: usize = usize::MAX - 1;
/// Size of the thread's read buffer, shared by all its connections.
const READ_BUFFER: usize = 64 * 1024;
/// Reads per connection per turn, so one busy client cannot starve others.
const READS_PER_TURN: usize = 4;
/// Accepts per turn.
const ACCEPTS_PER_TURN: usize = 256;
/// Writes between two looks at the hub's commands while flushing.
const WRITES_BETWEEN_COMMANDS: usize = 128;

struct Connection {
    stream: TcpStream,
    out: OutQueue,
    /// Plain, or TLS (the engine's session: this thread only moves bytes).
    transport: Transport,
    /// Close once the queue is empty (the core asked); input is discarded.
    closing: bool,
    /// Output all written and our side shut down: waiting for the peer to
    /// hang up, for as long as the ending allows (since when: the entry in
    /// `IoLoop::lingering`, so this stays one byte).
    lingering: bool,
    /// Writable interest is registered.
    want_write: bool,
    /// Readable interest is withdrawn: the hub's inbox is full.
    reads_paused: bool,
    /// The peer ended its input: nothing more is read, and once the core
    /// closes it and its output is written it goes without lingering.
    input_ended: bool,
    /// Queued for a flush at the end of this turn.
    dirty: bool,
}

/// A listener this thread accepts on, with its own backoff: the engine's
/// rule (pause on a failing accept) holds per listener.
struct Acceptor {
    listener: TcpListener,
    /// What connections accepted here speak.
    dialect: Dialect,
    /// The listener's TLS, if any.
    tls: Option<TlsAcceptor>,
    /// The HTTP listener's settings, if it is that one.
    web: Option<Arc<WebSettings>>,
    /// Failing accepts: when to watch the listener again, and the log.
    paused_until: Option<Instant>,
    backoff: AcceptBackoff,
}

pub(crate) struct IoLoop {
    pub(crate) index: usize,
    pub(crate) threads: usize,
    pub(crate) poller: Arc<Poller>,
    pub(crate) mode: PollMode,
    pub(crate) mailbox: Arc<Mailbox>,
    pub(crate) inbox: Arc<Inbox>,
    /// The listeners (thread 0 only), by key order.
    acceptors: Vec<Acceptor>,
    pub(crate) max_outbound: usize,
    conns: AHashMap<usize, Connection>,
    dirty: Vec<usize>,
    /// Lingering connections by when they began to linger. Every
    /// connection lingers as long under one ending, so pushing at the back
    /// keeps them in deadline order too; the deadline is worked out with
    /// the ending of the moment, so a shutdown shortens every linger.
    lingering: VecDeque<(Instant, usize)>,
    /// TLS connections by handshake deadline (one timeout for all, so in
    /// order); an entry whose handshake is done is skipped when due.
    handshakes: VecDeque<(Instant, usize)>,
    /// Closing connections by the deadline for their last bytes
    /// ([`closing::CLOSE_FLUSH_LIMIT`], one for all, so in order).
    closings: VecDeque<(Instant, usize)>,
    read_buffer: Vec<u8>,
    stop_deadline: Option<Instant>,
    /// Connections whose reading waits for room in the hub's inbox.
    reads_paused: Vec<usize>,
}

impl IoLoop {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        index: usize,
        threads: usize,
        poller: Arc<Poller>,
        mode: PollMode,
        mailbox: Arc<Mailbox>,
        inbox: Arc<Inbox>,
        listeners: Vec<Listener>,
        max_outbound: usize,
    ) -> Self {
        let acceptors = listeners
            .into_iter()
            .map(|listener| Acceptor {
                listener: listener.socket,
                dialect: listener.dialect,
                tls: listener.tls,
                web: listener.web,
                paused_until: None,
                backoff: AcceptBackoff::default(),
            })
            .collect();
        Self {
            index,
            threads,
            poller,
            mode,
            mailbox,
            inbox,
            acceptors,
            max_outbound,
            conns: AHashMap::new(),
            dirty: Vec::new(),
            lingering: VecDeque::new(),
            handshakes: VecDeque::new(),
            closings: VecDeque::new(),
            read_buffer: vec![0; READ_BUFFER],
            stop_deadline: None,
            reads_paused: Vec::new(),
        }
    }

    pub(crate) fn run(mut self) {
        self.register_listeners();
        let mut events = Events::new();
        let mut backlog = false;
        loop {
            events.clear();
            self.resume_reading();
            let timeout = if backlog {
                // Commands wait: look at the sockets without sleeping.
                Some(Duration::ZERO)
            } else {
                let linger_for = self.ending().linger();
                let linger = self.lingering.front().map(|&(since, _)| since + linger_for);
                let handshake = self.handshakes.front().map(|&(deadline, _)| deadline);
                let closing = self.closings.front().map(|&(deadline, _)| deadline);
                let paused = self.acceptors.iter().filter_map(|a| a.paused_until).min();
                [self.stop_deadline, linger, handshake, closing, paused]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|deadline| deadline.saturating_duration_since(Instant::now()))
            };
            if let Err(error) = self.poller.wait(&mut events, timeout)
                && error.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(%error, "poll failed; stopping this I/O thread");
                break;
            }
            let mut pushed = false;
            for event in events.iter() {
                if let Some(index) = self.acceptor_of(event.key) {
                    pushed |= self.accept_ready(index);
                    continue;
                }
                if event.readable {
                    pushed |= self.read_ready(event.key);
                }
                if event.writable {
                    self.mark_dirty(event.key);
                }
                self.rearm(event.key);
            }
            if pushed {
                self.inbox.wake();
            }
            backlog = self.run_commands();
            backlog |= self.flush_dirty();
            self.end_lingering(Instant::now());
            self.end_stuck_closings(Instant::now());
            if self.end_handshakes(Instant::now()) {
                self.inbox.wake();
            }
            self.resume_accepting(Instant::now());
            if self
                .stop_deadline
                .is_some_and(|deadline| self.conns.is_empty() || Instant::now() >= deadline)
            {
                break;
            }
        }
        let open: Vec<usize> = self.conns.keys().copied().collect();
        for key in open {
            self.drop_connection(key);
        }
    }

    fn register_listeners(&mut self) {
        for (index, acceptor) in self.acceptors.iter().enumerate() {
            let watch = || {
                acceptor.listener.set_nonblocking(true)?;
                // SAFETY: the listener is owned by `self` and is removed
                // from the poller (`stop`) before it is dropped.
                #[allow(unsafe_code)]
                unsafe {
                    self.poller.add_with_mode(
                        &acceptor.listener,
                        Interest::readable(listener_key(index)),
                        self.mode,
                    )
                }
            };
            if let Err(error) = watch() {
                tracing::error!(
                    %error,
                    dialect = %acceptor.dialect,
                    "cannot watch a listener; it will accept no connection"
                );
            }
        }
    }

    /// Which listener a poller key is, if it is one.
    fn acceptor_of(&self, key: usize) -> Option<usize> {
        let index = FIRST_LISTENER_KEY.checked_sub(key)?;
        (index < self.acceptors.len()).then_some(index)
    }

    fn accept_ready(&mut self, index: usize) -> bool {
        let Some(acceptor) = self.acceptors.get_mut(index) else {
            return false;
        };
        let mut accepted = false;
        for _ in 0..ACCEPTS_PER_TURN {
            match acceptor.listener.accept() {
                Ok((stream, peer)) => {
                    acceptor.backoff.succeeded();
                    self.inbox.push(Event::Accepted {
                        stream,
                        peer,
                        dialect: acceptor.dialect,
                        tls: acceptor.tls.clone(),
                        web: acceptor.web.clone(),
                    });
                    accepted = true;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // Out of descriptors and the like: the listener stays
                    // readable, so stop watching it for a while (the
                    // engine's rule) rather than spin.
                    let now = Instant::now();
                    let pause = acceptor.backoff.failed(&error, now);
                    if !pause.is_zero() {
                        self.pause_accepting(index, now + pause);
                        return accepted;
                    }
                }
            }
        }
        if self.mode == PollMode::Oneshot {
            self.watch_listener(index, "cannot re-arm a listener");
        }
        accepted
    }

    /// Stops watching listener `index` until `until`.
    fn pause_accepting(&mut self, index: usize, until: Instant) {
        let Some(acceptor) = self.acceptors.get_mut(index) else {
            return;
        };
        acceptor.paused_until = Some(until);
        if let Err(error) = self.poller.modify_with_mode(
            &acceptor.listener,
            Interest::none(listener_key(index)),
            self.mode,
        ) {
            tracing::error!(%error, dialect = %acceptor.dialect, "cannot pause a listener");
        }
    }

    /// Watches each paused listener again once its pause is over.
    fn resume_accepting(&mut self, now: Instant) {
        for index in 0..self.acceptors.len() {
            let acceptor = &mut self.acceptors[index];
            if acceptor.paused_until.is_none_or(|until| until > now) {
                continue;
            }
            acceptor.paused_until = None;
            self.watch_listener(index, "cannot watch a listener again");
        }
    }

    /// Registers readable interest in listener `index`.
    fn watch_listener(&self, index: usize, failure: &str) {
        let Some(acceptor) = self.acceptors.get(index) else {
            return;
        };
        if let Err(error) = self.poller.modify_with_mode(
            &acceptor.listener,
            Interest::readable(listener_key(index)),
            self.mode,
        ) {
            tracing::error!(%error, dialect = %acceptor.dialect, "{failure}");
        }
    }

    /// Reads what one connection has, a bounded amount, and hands it to
    /// the hub. Returns whether an event was pushed.
    fn read_ready(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(&key) else {
            return false;
        };
        let id = conn_id(key);
        if conn.closing {
            // The core is done with it: input is read away, never handed on.
            return self.discard_input(key);
        }
        for _ in 0..READS_PER_TURN {
            if !self.inbox.accepts_input() && self.inbox.pause_reading() {
                self.pause_reading(key);
                return true;
            }
            let Some(conn) = self.conns.get_mut(&key) else {
                return true;
            };
            match conn.stream.read(&mut self.read_buffer) {
                Ok(0) => {
                    self.end_input(key);
                    return true;
                }
                Ok(n) => {
                    let received = match conn.transport.received(&self.read_buffer[..n]) {
                        Ok(received) => received,
                        Err(error) => {
                            // Garbage, a broken handshake: this connection
                            // only, and no panic.
                            let peer = conn.stream.peer_addr().ok();
                            tracing::info!(conn = %id, ?peer, %error, "transport failed; closing");
                            // The core forgets it now; the socket ends as a
                            // closed connection does: the alert saying why
                            // (all the transport will still send), then our
                            // side shut down and a bounded linger, so the
                            // alert is not lost to a reset.
                            self.inbox.push(Event::Closed { conn: id });
                            self.start_closing(key);
                            return true;
                        }
                    };
                    if !conn.transport.is_plain() {
                        // Handshake replies or an answer to send, or the
                        // handshake is done and queued lines may now leave.
                        self.mark_dirty(key);
                    }
                    if let Some(signal) = received.signal {
                        self.inbox.push(signal_event(id, signal));
                    }
                    if !received.plaintext.is_empty() {
                        self.inbox.push(Event::Received {
                            conn: id,
                            bytes: received.plaintext,
                        });
                    }
                    if received.peer_closed {
                        self.end_input(key);
                        return true;
                    }
                    if let Some(why) = received.ending {
                        // Over, with bytes still to send (an HTTP answer, a
                        // WebSocket close): ended as after a TLS error.
                        tracing::debug!(conn = %id, %why, "web connection ends");
                        self.inbox.push(Event::Closed { conn: id });
                        self.start_closing(key);
                        return true;
                    }
                    if n < self.read_buffer.len() {
                        return true;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return true,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.lose(key);
                    return true;
                }
            }
        }
        true
    }

    /// Reads away input of a connection the core closed. Its end of
    /// stream (or an error) lets it go, lingering or not, as on the other
    /// backend: the peer left. The core is not told: it closed it.
    fn discard_input(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(&key) else {
            return false;
        };
        for _ in 0..READS_PER_TURN {
            match conn.stream.read(&mut self.read_buffer) {
                Ok(0) => {
                    self.drop_connection(key);
                    return false;
                }
                Ok(_) => {}
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    return false;
                }
                Err(_) => {
                    self.drop_connection(key);
                    return false;
                }
            }
        }
        // More next turn: level-triggered readiness comes back.
        false
    }

    /// The peer ended its input: the core hears it (and closes the
    /// connection after its answers), and the socket is no longer read,
    /// as its end of stream would be reported again and again.
    fn end_input(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        conn.input_ended = true;
        self.inbox.push(Event::InputEnded { conn: conn_id(key) });
        self.update_interest(key);
    }

    /// Drops lingering connections whose peer did not hang up in time.
    fn end_lingering(&mut self, now: Instant) {
        let linger = self.ending().linger();
        while let Some(&(since, key)) = self.lingering.front() {
            if since + linger > now {
                return;
            }
            self.lingering.pop_front();
            // Ids are never reused: a lingering entry is this connection.
            if let Some(conn) = self.conns.get(&key)
                && conn.lingering
            {
                closing::discard_unread(&conn.stream);
                self.drop_connection(key);
            }
        }
    }

    /// Marks `key` closing: its queued output goes, then it ends, within
    /// [`closing::CLOSE_FLUSH_LIMIT`].
    fn start_closing(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if !conn.closing {
            conn.closing = true;
            self.closings
                .push_back((Instant::now() + closing::CLOSE_FLUSH_LIMIT, key));
        }
        self.mark_dirty(key);
    }

    /// Resets closing connections whose last bytes did not leave in time
    /// (the peer reads nothing); the core forgot them already.
    fn end_stuck_closings(&mut self, now: Instant) {
        while let Some(&(deadline, key)) = self.closings.front() {
            if deadline > now {
                return;
            }
            self.closings.pop_front();
            if let Some(conn) = self.conns.get(&key)
                && conn.closing
                && !conn.lingering
            {
                tracing::info!(conn = %conn_id(key), "closed connection not reading its last bytes; reset");
                closing::abort(&conn.stream);
                self.drop_connection(key);
            }
        }
    }

    /// Cuts off TLS connections whose handshake outlived its deadline (a
    /// slowloris); the core hears of them as lost. Returns whether any was.
    fn end_handshakes(&mut self, now: Instant) -> bool {
        let mut cut = false;
        while let Some(&(deadline, key)) = self.handshakes.front() {
            if deadline > now {
                break;
            }
            self.handshakes.pop_front();
            if let Some(conn) = self.conns.get(&key)
                && conn.transport.handshake_expired(now)
            {
                let peer = conn.stream.peer_addr().ok();
                tracing::info!(conn = %conn_id(key), ?peer, "handshake (TLS, HTTP request) timed out; closing");
                self.lose(key);
                cut = true;
            }
        }
        cut
    }

    /// Runs at most [`COMMANDS_PER_TURN`] commands; returns whether more
    /// are waiting.
    fn run_commands(&mut self) -> bool {
        for _ in 0..COMMANDS_PER_TURN {
            let Some(command) = self.mailbox.pop() else {
                return false;
            };
            match command {
                Command::Adopt {
                    conn,
                    stream,
                    tls,
                    web,
                } => self.adopt(conn, stream, tls.as_ref(), web.as_ref()),
                Command::Send {
                    conn,
                    bytes,
                    priority,
                } => self.queue(conn.get() as usize, &bytes, priority),
                Command::Broadcast {
                    to,
                    except,
                    bytes,
                    priority,
                } => {
                    for conn in local_recipients(&to, except, self.index, self.threads) {
                        self.queue(conn.get() as usize, &bytes, priority);
                    }
                }
                Command::Close { conn } => self.start_closing(conn.get() as usize),
                Command::Stop => self.stop(),
                Command::Panic => panic!("injected panic on I/O thread {}", self.index),
            }
        }
        true
    }

    fn adopt(
        &mut self,
        id: ConnId,
        stream: TcpStream,
        tls: Option<&TlsAcceptor>,
        web: Option<&Arc<WebSettings>>,
    ) {
        let key = id.get() as usize;
        let transport = match Transport::new(tls, web, Instant::now()) {
            Ok(transport) => transport,
            Err(error) => {
                tracing::warn!(conn = %id, %error, "cannot start TLS");
                self.inbox.send(Event::Closed { conn: id });
                return;
            }
        };
        if let Some(deadline) = transport.handshake_deadline() {
            self.handshakes.push_back((deadline, key));
        }
        let setup = stream
            .set_nonblocking(true)
            .and_then(|()| stream.set_nodelay(true));
        if let Err(error) = setup {
            tracing::warn!(conn = %id, %error, "cannot set up socket");
            self.inbox.send(Event::Closed { conn: id });
            return;
        }
        // SAFETY: the stream is owned by the `Connection` stored under `key`;
        // `drop_connection` deletes it from the poller before dropping it.
        #[allow(unsafe_code)]
        let added = unsafe {
            self.poller
                .add_with_mode(&stream, Interest::readable(key), self.mode)
        };
        if let Err(error) = added {
            tracing::warn!(conn = %id, %error, "cannot watch socket");
            self.inbox.send(Event::Closed { conn: id });
            return;
        }
        self.conns.insert(
            key,
            Connection {
                stream,
                out: OutQueue::default(),
                transport,
                closing: false,
                lingering: false,
                want_write: false,
                reads_paused: false,
                input_ended: false,
                dirty: false,
            },
        );
    }

    fn queue(&mut self, key: usize, lines: &[u8], priority: Priority) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.out.push(lines, priority) > self.max_outbound {
            // One hub batch can bring many lines at once: see what the
            // socket takes before judging the client.
            let flushed = conn
                .transport
                .flush(&mut conn.out, &mut conn.stream, conn.closing);
            if flushed.is_err() {
                self.lose(key);
                return;
            }
            if closing::too_slow(conn.out.queued(), self.max_outbound) {
                // It stopped reading: cut it off now so its queue cannot
                // grow, and let the core announce it.
                let id = conn_id(key);
                tracing::warn!(conn = %id, queued = conn.out.queued(), "slow consumer");
                closing::abort(&conn.stream);
                self.drop_connection(key);
                self.inbox.send(Event::SlowConsumer { conn: id });
                return;
            }
        }
        // Marked here rather than through `mark_dirty`: this runs once per
        // recipient of every line, and a second map lookup shows.
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(&key)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    /// One vectored write per connection that has output this turn.
    ///
    /// Every [`WRITES_BETWEEN_COMMANDS`] writes the hub's new commands are
    /// queued too: under load a pass over thousands of connections takes
    /// tens of milliseconds, and a line that arrives meanwhile then still
    /// leaves in this pass to every recipient not yet written, instead of
    /// waiting for the next. Recipients already written are marked dirty
    /// for the next turn. Returns whether anything is left for it (dirty
    /// connections or commands).
    fn flush_dirty(&mut self) -> bool {
        let mut backlog = false;
        for (written, key) in std::mem::take(&mut self.dirty).into_iter().enumerate() {
            if written > 0 && written % WRITES_BETWEEN_COMMANDS == 0 {
                backlog = self.run_commands();
            }
            let Some(conn) = self.conns.get_mut(&key) else {
                continue;
            };
            conn.dirty = false;
            if conn.lingering {
                continue;
            }
            match conn
                .transport
                .flush(&mut conn.out, &mut conn.stream, conn.closing)
            {
                Ok(true) if conn.closing => self.finish(key),
                Ok(done) => self.want_write(key, !done),
                Err(_) => self.lose(key),
            }
        }
        backlog || !self.dirty.is_empty()
    }

    /// The core closed `key` and its output is all written: end our side,
    /// then linger for the peer or let go at once, as [`closing`] rules.
    fn finish(&mut self, key: usize) {
        let linger = self.ending().linger();
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        closing::finish(&conn.stream);
        // A peer that ended its input already hung up its side: nothing to
        // wait for.
        if linger.is_zero() || conn.input_ended {
            closing::discard_unread(&conn.stream);
            self.drop_connection(key);
            return;
        }
        let now = Instant::now();
        conn.lingering = true;
        self.lingering.push_back((now, key));
        self.want_write(key, false);
    }

    /// How connections the core closed end now.
    fn ending(&self) -> Ending {
        if self.stop_deadline.is_some() {
            Ending::Stopping
        } else {
            Ending::Closed
        }
    }

    fn want_write(&mut self, key: usize, on: bool) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.want_write == on {
            return;
        }
        conn.want_write = on;
        self.update_interest(key);
    }

    /// Stops reading `key` until the hub's inbox has room again.
    fn pause_reading(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.reads_paused {
            return;
        }
        conn.reads_paused = true;
        self.reads_paused.push(key);
        self.update_interest(key);
    }

    /// Reads again where the inbox's backpressure stopped it, once the
    /// inbox has room (the hub wakes this thread then).
    fn resume_reading(&mut self) {
        if self.reads_paused.is_empty() || !self.inbox.accepts_input() {
            return;
        }
        for key in std::mem::take(&mut self.reads_paused) {
            if let Some(conn) = self.conns.get_mut(&key) {
                conn.reads_paused = false;
                self.update_interest(key);
            }
        }
    }

    /// Registers what `key` waits for: reading unless paused, writing
    /// while output is left.
    fn update_interest(&self, key: usize) {
        let Some(conn) = self.conns.get(&key) else {
            return;
        };
        let reading = !conn.reads_paused && !conn.input_ended;
        let interest = match (reading, conn.want_write) {
            (true, true) => Interest::all(key),
            (true, false) => Interest::readable(key),
            (false, true) => Interest::writable(key),
            (false, false) => Interest::none(key),
        };
        if let Err(error) = self
            .poller
            .modify_with_mode(&conn.stream, interest, self.mode)
        {
            tracing::warn!(conn = %conn_id(key), %error, "cannot change interest");
        }
    }

    /// Oneshot pollers forget interest after each event.
    fn rearm(&mut self, key: usize) {
        if self.mode != PollMode::Oneshot {
            return;
        }
        self.update_interest(key);
    }

    /// The peer went away or the socket failed: tell the core.
    fn lose(&mut self, key: usize) {
        // The core hears of it before the socket closes: a client that
        // sees the close and connects again at once is counted after it
        // (per-address limits), as events reach the hub in order.
        if self.conns.contains_key(&key) {
            self.inbox.push(Event::Closed { conn: conn_id(key) });
        }
        self.drop_connection(key);
    }

    fn drop_connection(&mut self, key: usize) -> Option<ConnId> {
        let conn = self.conns.remove(&key)?;
        if let Err(error) = self.poller.delete(&conn.stream) {
            tracing::debug!(conn = %conn_id(key), %error, "delete from poller failed");
        }
        Some(conn_id(key))
    }

    fn stop(&mut self) {
        for acceptor in self.acceptors.drain(..) {
            let _ = self.poller.delete(&acceptor.listener);
        }
        self.stop_deadline = Some(Instant::now() + SHUTDOWN_FLUSH_LIMIT);
        // Connections already lingering now linger as the new ending says
        // (end_lingering works deadlines out with it).
        self.end_lingering(Instant::now());
        let keys: Vec<usize> = self.conns.keys().copied().collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(&key)
                && !conn.lingering
            {
                conn.closing = true;
                self.mark_dirty(key);
            }
        }
    }
}

/// The connection a key stands for: a connection's key is its id (ids
/// are never reused), so the entry need not hold the id as well.
fn conn_id(key: usize) -> ConnId {
    ConnId::from_raw(key as u64)
}

/// The poller key of listener `index`.
fn listener_key(index: usize) -> usize {
    FIRST_LISTENER_KEY - index
}
