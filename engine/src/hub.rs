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
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatd_core::{ConnId, LoginRequest, Output, PasswordVerdict, Priority, Server};
use crossbeam_queue::SegQueue;

use crate::auth::PasswordChecker;
use crate::clock::Clock;
use crate::persist::{HistoryWriter, PersistReport};

/// Something that happened outside the core.
#[derive(Debug)]
pub enum Event {
    /// The listener accepted a connection.
    Accepted {
        /// The new socket (blocking or not; the owning thread sets it up).
        stream: TcpStream,
        /// The peer's address.
        peer: SocketAddr,
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
    /// Stop the server gracefully.
    Shutdown {
        /// Told to every client.
        reason: String,
    },
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
}

/// The hub's lock-free inbox.
#[derive(Debug, Default)]
pub struct Inbox {
    events: SegQueue<Event>,
    hub: OnceLock<Thread>,
}

impl Inbox {
    /// Queues an event; call [`Inbox::wake`] after a batch of them.
    pub fn push(&self, event: Event) {
        self.events.push(event);
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

    /// Takes the next event, as the hub does (for tests of event sources).
    #[cfg(test)]
    pub(crate) fn pop(&self) -> Option<Event> {
        self.events.pop()
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
    /// The workers that verify operator passwords.
    pub(crate) auth: PasswordChecker,
}

impl Hub {
    pub(crate) fn run(mut self) {
        self.inbox
            .hub
            .set(std::thread::current())
            .unwrap_or_else(|_| tracing::error!("the hub inbox was already bound to a thread"));
        let inbox = self.inbox.clone();
        self.clock.on_advance(Box::new(move || inbox.wake()));
        let threads = self.mailboxes.len();
        let mut batches: Vec<Vec<Command>> = (0..threads).map(|_| Vec::new()).collect();
        let mut stopping = false;
        while !stopping {
            self.fire_due_timers();
            let mut handled = 0;
            while handled < EVENTS_PER_TURN {
                let Some(event) = self.inbox.events.pop() else {
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
        // Flush and sync history before the process may exit.
        if let Some(writer) = self.writer {
            writer.finish();
        }
    }

    fn fire_due_timers(&mut self) -> Instant {
        let now = self.clock.now();
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
            Event::Accepted { stream, peer } => match self.server.accept(now, peer) {
                Ok(conn) => {
                    batches[thread_of(conn, batches.len())].push(Command::Adopt { conn, stream });
                }
                Err(refused) => {
                    tracing::info!(%peer, code = %refused.code, "refused a connection");
                    refuse(stream, &refused.line);
                }
            },
            Event::Received { conn, bytes } => self.server.handle(now, conn, &bytes),
            Event::Closed { conn } => self.server.handle_closed(now, conn),
            Event::SlowConsumer { conn } => {
                tracing::warn!(%conn, "disconnected a slow consumer");
                self.server.handle_slow_consumer(now, conn);
            }
            Event::Persisted(PersistReport::Stored(ids)) => {
                for id in ids {
                    self.server.handle_persisted(now, id);
                }
            }
            Event::Persisted(PersistReport::Failed(ids)) => {
                for id in ids {
                    self.server.handle_persist_failed(now, id);
                }
            }
            Event::PasswordChecked { request, verdict } => {
                self.server.handle_password_verdict(now, request, verdict);
            }
            Event::Shutdown { reason } => {
                tracing::info!(%reason, "shutting down");
                self.server.handle_shutdown(now, &reason);
                return true;
            }
        }
        false
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
                    Some(writer) => writer.append(record),
                    None => kept_in_memory.push(record.id),
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
