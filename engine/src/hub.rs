//! The core's owner thread, and the queues that connect it to the I/O
//! threads.
//!
//! One thread owns the [`Server`]. I/O threads push [`Event`]s into the
//! hub's lock-free [`Inbox`] and wake it; the hub feeds them to the core,
//! drains its outputs and hands each I/O thread one batch of [`Command`]s
//! per turn through that thread's [`Mailbox`], waking it once. A broadcast
//! travels as one command per I/O thread carrying the encoded line and the
//! shared recipient list; each thread picks out its own connections. No
//! lock is taken per message.
//!
//! Connection `c` lives on I/O thread `c % threads`, so routing needs no map.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatd_core::history_query::{HistoryAnswer, HistoryQuery, Shortfall};
use chatd_core::{
    Arrival, ConnId, Dialect, LoginRequest, Output, PasswordVerdict, Priority, Server,
};
use crossbeam_queue::SegQueue;

use crate::accounts::{AccountWorker, Job};
use crate::auth::PasswordChecker;
use crate::clock::{Clock, WallClockSync};
use crate::persist::{HistoryReader, HistoryWriter, PersistReport};
use crate::tls::TlsAcceptor;
use crate::tls::refuse::Refuser;
use crate::web::{WebQuery, WebSettings, http};

/// Something that happened outside the core.
#[derive(Debug)]
pub enum Event {
    /// A listener accepted a connection.
    Accepted {
        /// The new socket (blocking or not; the owning thread sets it up).
        stream: TcpStream,
        /// The peer's address.
        peer: SocketAddr,
        /// The dialect of the listener that accepted it.
        dialect: Dialect,
        /// The listener's TLS, if it has any: the connection is encrypted.
        tls: Option<TlsAcceptor>,
        /// The HTTP listener's settings, if it came in there.
        web: Option<Arc<WebSettings>>,
    },
    /// A connection of the HTTP listener upgraded to a WebSocket that
    /// speaks `dialect`: it becomes a session.
    Upgraded {
        /// The connection.
        conn: ConnId,
        /// Its route's dialect.
        dialect: Dialect,
    },
    /// A connection of the HTTP listener asks what only the hub knows.
    WebQuery {
        /// The connection.
        conn: ConnId,
        /// What it asks.
        query: WebQuery,
    },
    /// Bytes read from a connection.
    Received {
        /// The connection.
        conn: ConnId,
        /// What was read.
        bytes: Vec<u8>,
    },
    /// The peer closed the connection or it failed.
    Closed {
        /// The connection.
        conn: ConnId,
    },
    /// The peer ended its input cleanly (an end of stream, a TLS
    /// close_notify): the I/O thread reads no more but keeps the
    /// connection, so the answers to its last lines are still written
    /// before the core's close.
    InputEnded {
        /// The connection.
        conn: ConnId,
    },
    /// The connection's outbound queue passed its limit; the I/O thread
    /// has already dropped the socket.
    SlowConsumer {
        /// The connection.
        conn: ConnId,
    },
    /// The history writer finished some records.
    Persisted(PersistReport),
    /// An operator password check finished (or could not be queued).
    PasswordChecked {
        /// The core's request.
        request: LoginRequest,
        /// The verdict.
        verdict: PasswordVerdict,
    },
    /// The history reader answered a query (or could not queue it).
    HistoryAnswered(HistoryAnswer),
    /// The cluster bus says something to the core.
    Bus(chatd_core::cluster::BusEvent),
    /// The account worker hashed a new password
    /// ([`crate::accounts::Job::Hash`]); `None` when the job could not be
    /// queued (the core refuses the attempt with try-later).
    PasswordHashed {
        /// The core's request.
        request: LoginRequest,
        /// The Argon2id PHC string.
        hash: Option<String>,
    },
    /// The account worker finished a store write
    /// ([`crate::accounts::Job::Store`]); `stored` is false when it failed
    /// or could not be queued, and the change is then not acknowledged.
    AccountStored {
        /// The core's request.
        request: LoginRequest,
        /// Whether the change is durable.
        stored: bool,
    },
    /// Stop the server gracefully.
    Shutdown {
        /// Told to every client.
        reason: String,
    },
    /// A test-only fault: make `site` panic, to prove that a panic ends the
    /// process (see [`crate::ControlHandle::inject_panic`]).
    InjectPanic(PanicSite),
}

/// A thread a test can make panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicSite {
    /// The core's owner thread.
    Hub,
    /// I/O thread number `n` (wrapped to the threads there are).
    Io(usize),
}

/// Work for an I/O thread.
#[derive(Debug)]
pub enum Command {
    /// Take over a newly admitted connection.
    Adopt {
        /// Its id.
        conn: ConnId,
        /// Its socket.
        stream: TcpStream,
        /// TLS to run over it (the I/O thread makes the session), or
        /// `None` for plain TCP.
        tls: Option<TlsAcceptor>,
        /// The HTTP listener's settings, for a connection that came in there.
        web: Option<Arc<WebSettings>>,
    },
    /// Queue bytes for one connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// Whole lines.
        bytes: Bytes,
        /// Queue position.
        priority: Priority,
    },
    /// Queue bytes for those of `to` that live on this thread.
    Broadcast {
        /// All recipients (any thread).
        to: Arc<[ConnId]>,
        /// One to skip.
        except: Option<ConnId>,
        /// Whole lines.
        bytes: Bytes,
        /// Queue position.
        priority: Priority,
    },
    /// Flush what is queued, then close.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Stop accepting, flush every connection (for a bounded time), close
    /// them all and end the thread.
    Stop,
    /// A test-only fault: panic on this I/O thread ([`PanicSite::Io`]).
    Panic,
}

/// The default bound on received bytes waiting for the core
/// (`max_inbox_bytes`): at the core's pace, a fraction of a second of
/// input, and a few megabytes of memory at most.
pub const DEFAULT_MAX_INBOX_BYTES: usize = 8 * 1024 * 1024;

/// The smallest allowed `max_inbox_bytes`: one read of an I/O thread.
pub const MIN_INBOX_BYTES: usize = 64 * 1024;

/// The hub's lock-free inbox, with backpressure on received bytes.
///
/// When the core falls behind, received bytes pile up here. Past
/// `max_bytes`, I/O threads stop reading ([`Inbox::accepts_input`],
/// [`Inbox::pause_reading`]): clients' input waits in the kernel and TCP
/// slows the senders down, instead of the inbox growing without limit.
/// Each I/O thread checks before every read, so the inbox holds at most
/// `max_bytes` plus one read per I/O thread. Once the hub has drained it
/// to half, it wakes the I/O threads and they read again (decision 24).
pub struct Inbox {
    events: SegQueue<Event>,
    hub: OnceLock<Thread>,
    /// Received bytes queued and not yet handed to the core.
    queued_bytes: AtomicUsize,
    /// The most `queued_bytes` has been.
    peak_bytes: AtomicUsize,
    /// Above this, I/O threads stop reading.
    max_bytes: usize,
    /// An I/O thread stopped reading and waits to be woken.
    readers_paused: AtomicBool,
    /// How many times an I/O thread stopped reading.
    pauses: AtomicU64,
    /// Wakes the I/O threads when reading may go on.
    resume: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("events", &self.events.len())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for Inbox {
    fn default() -> Self {
        Self::with_limit(DEFAULT_MAX_INBOX_BYTES)
    }
}

/// What the inbox went through, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxStats {
    /// Received bytes waiting for the core now.
    pub queued_bytes: usize,
    /// The most that ever waited.
    pub peak_bytes: usize,
    /// The bound (`max_inbox_bytes`).
    pub max_bytes: usize,
    /// How many times an I/O thread stopped reading because of it.
    pub pauses: u64,
}

impl Inbox {
    /// An inbox whose I/O threads stop reading past `max_bytes` of
    /// received input.
    pub fn with_limit(max_bytes: usize) -> Self {
        Self {
            events: SegQueue::new(),
            hub: OnceLock::new(),
            queued_bytes: AtomicUsize::new(0),
            peak_bytes: AtomicUsize::new(0),
            max_bytes,
            readers_paused: AtomicBool::new(false),
            pauses: AtomicU64::new(0),
            resume: OnceLock::new(),
        }
    }

    /// Queues an event; call [`Inbox::wake`] after a batch of them.
    pub fn push(&self, event: Event) {
        if let Event::Received { bytes, .. } = &event {
            let queued = self.queued_bytes.fetch_add(bytes.len(), Ordering::SeqCst) + bytes.len();
            self.peak_bytes.fetch_max(queued, Ordering::Relaxed);
        }
        self.events.push(event);
    }

    /// Whether I/O threads may read and push more input.
    pub fn accepts_input(&self) -> bool {
        self.queued_bytes.load(Ordering::SeqCst) < self.max_bytes
    }

    /// An I/O thread found the inbox full and is about to stop reading.
    /// Returns whether it must (false: the hub drained it meanwhile, read
    /// on). If it stops, the hub wakes every I/O thread through its
    /// mailbox's waker once the inbox is down to half.
    pub fn pause_reading(&self) -> bool {
        // Flag first, then look again: the hub lowers the count first, then
        // looks at the flag, so one of the two sees the other.
        self.readers_paused.store(true, Ordering::SeqCst);
        if self.accepts_input() {
            return false;
        }
        self.pauses.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// What the inbox went through.
    pub fn stats(&self) -> InboxStats {
        InboxStats {
            queued_bytes: self.queued_bytes.load(Ordering::SeqCst),
            peak_bytes: self.peak_bytes.load(Ordering::Relaxed),
            max_bytes: self.max_bytes,
            pauses: self.pauses.load(Ordering::Relaxed),
        }
    }

    /// Takes the next event for the core (the hub; tests of event sources).
    pub(crate) fn pop(&self) -> Option<Event> {
        let event = self.events.pop()?;
        if let Event::Received { bytes, .. } = &event {
            self.queued_bytes.fetch_sub(bytes.len(), Ordering::SeqCst);
        }
        Some(event)
    }

    /// After the hub drained some input: wakes the I/O threads if any
    /// stopped reading and the inbox is down to half.
    fn resume_readers(&self) {
        if self.queued_bytes.load(Ordering::SeqCst) > self.max_bytes / 2 {
            return;
        }
        if self.readers_paused.swap(false, Ordering::SeqCst)
            && let Some(resume) = self.resume.get()
        {
            resume();
        }
    }

    /// Wakes the hub if it sleeps (cheap if it does not).
    pub fn wake(&self) {
        if let Some(thread) = self.hub.get() {
            thread.unpark();
        }
    }

    /// Queues one event and wakes the hub.
    pub fn send(&self, event: Event) {
        self.push(event);
        self.wake();
    }
}

/// An I/O thread's inbox and how to wake it.
pub struct Mailbox {
    commands: SegQueue<Command>,
    waker: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("queued", &self.commands.len())
            .finish_non_exhaustive()
    }
}

impl Mailbox {
    /// A mailbox whose owner is woken by `waker` (e.g. `Poller::notify`).
    pub fn new(waker: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            commands: SegQueue::new(),
            waker: Box::new(waker),
        }
    }

    /// Takes the next command, if any.
    pub fn pop(&self) -> Option<Command> {
        self.commands.pop()
    }

    fn deliver(&self, batch: Vec<Command>) {
        for command in batch {
            self.commands.push(command);
        }
        self.wake();
    }

    /// Wakes the owner thread without a command (it looks at the inbox).
    fn wake(&self) {
        (self.waker)();
    }
}

/// Which I/O thread owns a connection.
pub fn thread_of(conn: ConnId, threads: usize) -> usize {
    (conn.get() % threads as u64) as usize
}

/// The recipients of a broadcast that live on I/O thread `index` of `threads`.
pub fn local_recipients(
    to: &[ConnId],
    except: Option<ConnId>,
    index: usize,
    threads: usize,
) -> impl Iterator<Item = ConnId> + '_ {
    to.iter()
        .copied()
        .filter(move |&conn| Some(conn) != except && thread_of(conn, threads) == index)
}

/// Most commands an I/O thread runs before it writes what they queued and
/// looks at its sockets again: the core can fill a mailbox faster than
/// one turn drains it, and writes must not wait for the mailbox to empty.
pub const COMMANDS_PER_TURN: usize = 256;

/// Most events handled before outputs are handed out: keeps latency
/// bounded when the inbox is flooded.
const EVENTS_PER_TURN: usize = 1024;

/// The longest the hub sleeps without a reason to wake (a safety net; every
/// event and clock jump wakes it anyway).
const MAX_PARK: Duration = Duration::from_secs(1);

/// The core's owner thread.
pub(crate) struct Hub {
    pub(crate) server: Server,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) mailboxes: Vec<Arc<Mailbox>>,
    /// The history writer, or `None` when history is kept in memory only
    /// (`persist = false`): records then count as stored at once.
    pub(crate) writer: Option<HistoryWriter>,
    /// When the core's calendar time is next re-anchored.
    pub(crate) wall_clock: WallClockSync,
    /// The workers that verify operator and account passwords.
    pub(crate) auth: PasswordChecker,
    /// Where account passwords are hashed and account changes stored.
    pub(crate) accounts: AccountWorker,
    /// The thread that reads stored history for queries, or `None` when
    /// nothing is stored (`persist = false`): queries are then answered
    /// empty at once.
    pub(crate) reader: Option<HistoryReader>,
    /// Records handed to the writer, and those it has reported on
    /// (stored or failed): a query waits in `held` until the writer has
    /// reported every record handed to it before the query, so the reader
    /// sees every line the core no longer holds in memory.
    pub(crate) appended: u64,
    pub(crate) settled: u64,
    pub(crate) held: std::collections::VecDeque<HeldQuery>,
    /// Sends refusal lines over TLS (only when a TLS listener exists).
    pub(crate) refuser: Option<Refuser>,
    /// How long the core's turns take (metrics.rs), kept by [`Hub::run`].
    pub(crate) turns: crate::metrics::Latencies,
    /// The cluster bus, when this server is a node of a cluster.
    pub(crate) bus: Option<crate::cluster::ClusterBus>,
    /// The bus said `Up` last (not `Down`): `/readyz` answers 503 while
    /// a clustered node cannot reach Redis.
    pub(crate) bus_up: bool,
}

/// A history query waiting for the writer to catch up.
#[derive(Debug)]
pub(crate) struct HeldQuery {
    /// `appended` when the core emitted it.
    mark: u64,
    /// When it was emitted: after [`HOLD_LIMIT`] it goes to the reader
    /// anyway, so a writer that never reports cannot hang it.
    since: Instant,
    query: Box<HistoryQuery>,
}

/// Longest a query waits for the writer.
const HOLD_LIMIT: Duration = Duration::from_secs(2);

impl Hub {
    pub(crate) fn run(mut self) {
        self.inbox
            .hub
            .set(std::thread::current())
            .unwrap_or_else(|_| tracing::error!("the hub inbox was already bound to a thread"));
        let inbox = self.inbox.clone();
        self.clock.on_advance(Box::new(move || inbox.wake()));
        let mailboxes = self.mailboxes.clone();
        let resume: Box<dyn Fn() + Send + Sync> = Box::new(move || {
            for mailbox in &mailboxes {
                mailbox.wake();
            }
        });
        if self.inbox.resume.set(resume).is_err() {
            tracing::error!("the hub inbox already had I/O threads to resume");
        }
        let threads = self.mailboxes.len();
        let mut batches: Vec<Vec<Command>> = (0..threads).map(|_| Vec::new()).collect();
        let mut stopping = false;
        while !stopping {
            // The engine's own clock, not `self.clock`: this measures the
            // machine's work for metrics, and a test clock may stand still.
            let turn = Instant::now();
            self.fire_due_timers();
            let mut handled = 0;
            while handled < EVENTS_PER_TURN {
                let Some(event) = self.inbox.pop() else {
                    break;
                };
                handled += 1;
                // Read the clock per event and fire what is due first, so an
                // event that follows a clock jump is never handled at an
                // instant before it (what the memory driver does too).
                let now = self.fire_due_timers();
                stopping |= self.handle(now, event, &mut batches);
                self.route(&mut batches);
            }
            self.route(&mut batches);
            if handled > 0 {
                // Idle turns (a timer at most) would drown the ones that
                // did work.
                self.turns.observe(turn.elapsed());
            }
            self.inbox.resume_readers();
            for (mailbox, batch) in self.mailboxes.iter().zip(&mut batches) {
                if !batch.is_empty() {
                    mailbox.deliver(std::mem::take(batch));
                }
            }
            if handled == 0 && !stopping {
                self.park();
            }
        }
        for mailbox in &self.mailboxes {
            mailbox.deliver(vec![Command::Stop]);
        }
        // The core's last requests (announcements) are queued: the bus
        // sends them, gives its lease back and leaves.
        if let Some(bus) = self.bus.take() {
            bus.shutdown();
        }
        // Flush and sync history before the process may exit.
        if let Some(writer) = self.writer {
            writer.finish();
        }
    }

    fn fire_due_timers(&mut self) -> Instant {
        let now = self.clock.now();
        if let Some(unix_ms) = self.wall_clock.due(self.clock.as_ref(), now) {
            self.server.handle_wall_clock(now, unix_ms);
        }
        if self
            .server
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now)
        {
            self.server.handle_timeout(now);
        }
        now
    }

    fn park(&self) {
        if !self.inbox.events.is_empty() {
            return;
        }
        let sleep = self
            .server
            .poll_timeout()
            .and_then(|deadline| self.clock.sleep_until(deadline))
            .map_or(MAX_PARK, |sleep| sleep.min(MAX_PARK));
        if !sleep.is_zero() {
            std::thread::park_timeout(sleep);
        }
    }

    /// Feeds one event to the core. Returns true when the server must stop.
    fn handle(&mut self, now: Instant, event: Event, batches: &mut [Vec<Command>]) -> bool {
        match event {
            Event::Accepted {
                stream,
                peer,
                dialect,
                tls,
                web,
            } => {
                let admitted = if web.is_some() {
                    self.server.accept_web(now, peer, tls.is_some())
                } else {
                    let arrival = Arrival {
                        dialect,
                        encrypted: tls.is_some(),
                        web: false,
                    };
                    self.server.accept_via(now, peer, arrival)
                };
                match admitted {
                    Ok(conn) => {
                        batches[thread_of(conn, batches.len())].push(Command::Adopt {
                            conn,
                            stream,
                            tls,
                            web,
                        });
                    }
                    Err(refused) => {
                        // The core rendered the line in the connection's
                        // dialect; an HTTP client gets it as a 503's body.
                        let listener = if web.is_some() {
                            "http"
                        } else {
                            dialect.name()
                        };
                        tracing::info!(%peer, %listener, tls = tls.is_some(), code = %refused.code, "refused a connection");
                        let line = match web {
                            Some(_) => Bytes::from(http::answer(
                                503,
                                "Service Unavailable",
                                &[],
                                http::TEXT,
                                &refused.line,
                                false,
                            )),
                            None => refused.line,
                        };
                        match (tls, &self.refuser) {
                            // Through TLS, after the handshake, off this thread.
                            (Some(tls), Some(refuser)) => {
                                refuser.refuse(stream, peer, tls, line);
                            }
                            (Some(_), None) => drop(stream),
                            (None, _) => refuse(stream, &line),
                        }
                    }
                }
            }
            Event::Upgraded { conn, dialect } => self.server.handle_upgraded(now, conn, dialect),
            Event::WebQuery { conn, query } => {
                // Answered, then closed: the core forgets the connection
                // now, as the I/O thread will not tell it again.
                let answer = self.answer_query(query);
                let thread = thread_of(conn, batches.len());
                batches[thread].push(Command::Send {
                    conn,
                    bytes: Bytes::from(answer),
                    priority: Priority::Normal,
                });
                batches[thread].push(Command::Close { conn });
                self.server.handle_closed(now, conn);
            }
            Event::Received { conn, bytes } => self.server.handle(now, conn, &bytes),
            Event::Closed { conn } => self.server.handle_closed(now, conn),
            Event::InputEnded { conn } => self.server.handle_input_ended(now, conn),
            Event::SlowConsumer { conn } => {
                tracing::warn!(%conn, "disconnected a slow consumer");
                self.server.handle_slow_consumer(now, conn);
            }
            Event::Persisted(PersistReport::Stored(ids)) => {
                if self.writer.is_some() {
                    self.settled += ids.len() as u64;
                }
                for id in ids {
                    self.server.handle_persisted(now, id);
                }
            }
            // Dropped here, on the thread that made them (see the variant).
            Event::Persisted(PersistReport::Spent(records)) => drop(records),
            Event::Persisted(PersistReport::Failed(ids)) => {
                if self.writer.is_some() {
                    self.settled += ids.len() as u64;
                }
                for id in ids {
                    self.server.handle_persist_failed(now, id);
                }
            }
            Event::PasswordChecked { request, verdict } => {
                self.server.handle_password_verdict(now, request, verdict);
            }
            Event::HistoryAnswered(answer) => self.server.handle_history_answer(now, answer),
            Event::Bus(event) => {
                match event {
                    chatd_core::cluster::BusEvent::Up => self.bus_up = true,
                    chatd_core::cluster::BusEvent::Down => self.bus_up = false,
                    _ => {}
                }
                self.server.handle_bus(now, event);
            }
            Event::PasswordHashed { request, hash } => {
                self.server.handle_password_hashed(now, request, hash);
            }
            Event::AccountStored { request, stored } => {
                self.server.handle_account_stored(now, request, stored);
            }
            Event::Shutdown { reason } => {
                tracing::info!(%reason, "shutting down");
                self.server.handle_shutdown(now, &reason);
                return true;
            }
            Event::InjectPanic(PanicSite::Hub) => panic!("injected panic on the core's thread"),
            Event::InjectPanic(PanicSite::Io(n)) => batches[n % batches.len()].push(Command::Panic),
        }
        false
    }

    /// The HTTP answer to a query of the HTTP listener.
    fn answer_query(&self, query: WebQuery) -> Vec<u8> {
        match query {
            WebQuery::Metrics => http::answer(
                200,
                "OK",
                &[("Cache-Control", "no-store")],
                crate::metrics::CONTENT_TYPE,
                crate::metrics::render(self).as_bytes(),
                false,
            ),
            // The hub answering is the proof: it turns, so it serves.
            WebQuery::Health => http::answer(200, "OK", &[], http::TEXT, b"ok\n", false),
            // History is recovered before the hub starts; a node of a
            // cluster is ready while its bus reaches Redis.
            WebQuery::Ready if self.bus.is_some() && !self.bus_up => http::answer(
                503,
                "Service Unavailable",
                &[],
                http::TEXT,
                b"cluster unavailable\n",
                false,
            ),
            WebQuery::Ready => http::answer(200, "OK", &[], http::TEXT, b"ready\n", false),
        }
    }

    /// Hands every pending output to the I/O thread or the history writer.
    fn route(&mut self, batches: &mut [Vec<Command>]) {
        let threads = batches.len();
        let mut kept_in_memory = Vec::new();
        while let Some(output) = self.server.poll_output() {
            match output {
                Output::Send {
                    to,
                    bytes,
                    priority,
                } => batches[thread_of(to, threads)].push(Command::Send {
                    conn: to,
                    bytes,
                    priority,
                }),
                Output::Broadcast {
                    to,
                    except,
                    bytes,
                    priority,
                } => {
                    for batch in batches.iter_mut() {
                        batch.push(Command::Broadcast {
                            to: to.clone(),
                            except,
                            bytes: bytes.clone(),
                            priority,
                        });
                    }
                }
                Output::Close { conn, reason } => {
                    tracing::debug!(%conn, ?reason, "closing");
                    batches[thread_of(conn, threads)].push(Command::Close { conn });
                }
                Output::Persist(record) => match &self.writer {
                    Some(writer) => {
                        writer.append(record);
                        self.appended += 1;
                    }
                    None => kept_in_memory.push(record.id),
                },
                // A node of a cluster reads room history from Redis;
                // whispers stay in the local log.
                Output::QueryHistory(query)
                    if self.bus.is_some()
                        && !matches!(
                            query.scope,
                            chatd_core::history_query::Scope::Whispers { .. }
                        ) =>
                {
                    if let Some(bus) = &self.bus {
                        bus.query_history(query);
                    }
                }
                Output::QueryHistory(query) => match &self.reader {
                    Some(_) => self.held.push_back(HeldQuery {
                        mark: self.appended,
                        since: self.clock.now(),
                        query,
                    }),
                    // Nothing stored: answered empty at once, through the
                    // inbox like a password verdict, so the core never
                    // hears of its query while still emitting it.
                    None => self
                        .inbox
                        .push(Event::HistoryAnswered(crate::persist::unanswered(&query))),
                },
                Output::HashPassword(request) => {
                    if let Err(Job::Hash(request)) = self.accounts.submit(Job::Hash(request)) {
                        tracing::debug!(request = %request.request, "account queue full");
                        // Through the inbox, as a full password-check
                        // queue is: the core hears of it after this turn.
                        self.inbox.push(Event::PasswordHashed {
                            request: request.request,
                            hash: None,
                        });
                    }
                }
                Output::StoreAccount(write) => {
                    if let Err(Job::Store(write)) = self.accounts.submit(Job::Store(write)) {
                        tracing::debug!(request = %write.request, "account queue full");
                        self.inbox.push(Event::AccountStored {
                            request: write.request,
                            stored: false,
                        });
                    }
                }
                Output::Bus(request) => match &self.bus {
                    Some(bus) => bus.submit(*request),
                    // Only a node of a cluster emits these.
                    None => tracing::warn!(?request, "bus request without a cluster"),
                },
                Output::VerifyPassword(check) => {
                    if let Err(check) = self.auth.submit(check) {
                        tracing::debug!(request = %check.request, "password check queue full");
                        // Through the inbox, so the core never hears of
                        // its request while still emitting it.
                        self.inbox.push(Event::PasswordChecked {
                            request: check.request,
                            verdict: PasswordVerdict::Busy,
                        });
                    }
                }
            }
        }
        if !kept_in_memory.is_empty() {
            // Through the inbox like the writer's reports, so the core sees
            // them in the same order relative to other events.
            self.inbox
                .send(Event::Persisted(PersistReport::Stored(kept_in_memory)));
        }
        self.release_queries();
    }

    /// Hands the reader every held query the writer has caught up with
    /// (or that waited too long). A full reader queue is answered `Busy`,
    /// through the inbox.
    fn release_queries(&mut self) {
        let Some(reader) = &self.reader else {
            return;
        };
        let mut now = None;
        while let Some(held) = self.held.front() {
            let caught_up = self.settled >= held.mark;
            if !caught_up {
                let now = *now.get_or_insert_with(|| self.clock.now());
                if now.saturating_duration_since(held.since) < HOLD_LIMIT {
                    break;
                }
                tracing::warn!(
                    "the history writer is slow: a query reads without its latest records"
                );
            }
            let Some(held) = self.held.pop_front() else {
                break;
            };
            if let Err(query) = reader.submit(held.query) {
                tracing::debug!(request = query.request.0, "history reader queue full");
                self.inbox.push(Event::HistoryAnswered(HistoryAnswer {
                    request: query.request,
                    records: Vec::new(),
                    shortfall: Some(Shortfall::Busy),
                }));
            }
        }
    }
}

/// Sends the refusal line and drops the socket. The line is tiny and the
/// socket's send buffer empty, so one non-blocking write suffices; if even
/// that fails, the peer just sees the close.
fn refuse(stream: TcpStream, line: &[u8]) {
    use std::io::Write;
    let mut stream = stream;
    if stream.set_nonblocking(true).is_ok() {
        let _ = stream.write(line);
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Input from a connection (ids come only from a core).
    fn received(n: usize) -> Event {
        let now = Instant::now();
        let mut server = Server::new(chatd_core::Config::default(), now, 0).expect("server");
        let conn = server
            .accept(now, "127.0.0.1:1".parse().expect("address"))
            .expect("accepted");
        Event::Received {
            conn,
            bytes: vec![b'x'; n],
        }
    }

    #[test]
    fn a_full_inbox_pauses_readers_until_the_hub_drains_it_to_half() {
        let inbox = Inbox::with_limit(100);
        let woken = Arc::new(AtomicUsize::new(0));
        let count = woken.clone();
        assert!(
            inbox
                .resume
                .set(Box::new(move || {
                    count.fetch_add(1, Ordering::SeqCst);
                }))
                .is_ok()
        );
        inbox.push(received(60));
        assert!(inbox.accepts_input());
        inbox.push(received(60));
        assert!(!inbox.accepts_input());
        assert!(inbox.pause_reading(), "still full: the reader stops");
        assert_eq!(inbox.stats().pauses, 1);
        assert_eq!(inbox.stats().peak_bytes, 120);
        assert!(inbox.pop().is_some());
        // 60 left: room again, but not yet down to half.
        inbox.resume_readers();
        assert_eq!(woken.load(Ordering::SeqCst), 0);
        assert!(inbox.pop().is_some());
        inbox.resume_readers();
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        // Woken once per pause, not per turn.
        inbox.resume_readers();
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert_eq!(inbox.stats().queued_bytes, 0);
    }
}
