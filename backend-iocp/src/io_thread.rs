//! One I/O thread: a compio runtime, the connections it owns, and a
//! dispatcher task that runs the core's commands.
//!
//! Every connection's input is read (see below) and handed to the core's
//! thread. Output is written at the end of each dispatcher turn, once per
//! connection that got lines in it. On Unix the dispatcher first sends
//! without blocking, as a readiness backend does: what the kernel takes at
//! once needs no operation and no task, which is nearly always all of it.
//! A writer task exists only while output is left over (or always, on
//! IOCP, which has no such send): it hands the kernel one whole buffer of
//! the connection's queue at a time, moved rather than copied, and ends
//! when the queue is empty. So a burst of welcome lines to thousands of
//! new connections does not leave thousands of freed writer tasks in the
//! heap (ARCHITECTURE.md, decision 75).
//!
//! Reads are where idle memory goes, since completion I/O owns a buffer
//! for every receive in flight. On Unix drivers (io_uring, the polling
//! fallback) a connection therefore waits for input without one: idle
//! sockets sit in one epoll (kqueue) set per thread, level-triggered, and
//! one task waits on that set with one poll operation, then receives from
//! each ready socket without blocking into the thread's one read buffer,
//! copying out only what arrived (decision 83). An idle connection holds
//! no task and no operation of its own. A connection in a handshake (TLS,
//! an HTTP request) waits with its own reader task, under the handshake's
//! deadline, until the handshake is over.
//! IOCP has no poll operation, so on Windows each connection reads into its
//! own small buffer, which doubles while reads fill it and shrinks back
//! when they do not (ARCHITECTURE.md, decision 18).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::net::TcpStream as StdTcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use chatd_core::{ConnId, Priority};
use chatd_engine::SHUTDOWN_FLUSH_LIMIT;
use chatd_engine::closing::{self, Ending};
use chatd_engine::hub::{COMMANDS_PER_TURN, Command, Event, Inbox, Mailbox, local_recipients};
#[cfg(not(unix))]
use chatd_engine::out_queue::Batch;
use chatd_engine::out_queue::OutQueue;
use chatd_engine::tls::TlsAcceptor;
use chatd_engine::transport::{Transport, signal_event};
use chatd_engine::web::WebSettings;
use compio::BufResult;
#[cfg(not(unix))]
use compio::buf::{IntoInner, IoBuf};
#[cfg(not(unix))]
use compio::io::AsyncRead;
#[cfg(not(unix))]
use compio::io::{AsyncWrite, AsyncWriteExt};
#[cfg(not(unix))]
use compio::net::TcpStream;
use compio::runtime::JoinHandle;

use crate::acceptor::Acceptor;
use crate::signal::Signal;

/// Smallest own read buffer (IOCP).
#[cfg(not(unix))]
const SMALL_READ: usize = 256;
/// Largest own read buffer (IOCP), and the thread's shared read buffer.
const LARGE_READ: usize = 64 * 1024;

/// How reads get their buffers, for the start-up line.
#[cfg(unix)]
pub(crate) const READS: &str = "poll then receive";
/// How reads get their buffers, for the start-up line.
#[cfg(not(unix))]
pub(crate) const READS: &str = "small per-connection buffers";

/// What one I/O thread needs.
pub(crate) struct ThreadContext {
    pub(crate) index: usize,
    pub(crate) threads: usize,
    pub(crate) max_outbound: usize,
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) mailbox: Arc<Mailbox>,
    pub(crate) signal: Arc<Signal>,
    /// One acceptor per listener (thread 0 only), stopped at shutdown.
    pub(crate) acceptors: Vec<Acceptor>,
}

struct Conn {
    id: ConnId,
    /// On Unix the socket itself: it is read and written without blocking
    /// as it is ready (compio's shared handle would cost 48 bytes more a
    /// connection, and only its operations need one).
    #[cfg(unix)]
    stream: StdTcpStream,
    #[cfg(not(unix))]
    stream: TcpStream,
    out: RefCell<OutQueue>,
    /// Plain, or TLS (the engine's session: this thread only moves bytes).
    transport: RefCell<Transport>,
    /// Bytes handed to the kernel by the writer and not yet completed.
    in_flight: Cell<usize>,
    /// A writer task is running.
    writing: Cell<bool>,
    /// Listed in [`Local::dirty`] for the end of this turn.
    dirty: Cell<bool>,
    /// Registered in the thread's [`Watch`] (and read by its task, not a
    /// reader of its own).
    #[cfg(unix)]
    watched: Cell<bool>,
    /// The core closed it: flush, shut down, then let go.
    closing: Cell<bool>,
    /// All written and shut down: waiting for the peer to hang up.
    lingering: Cell<bool>,
    /// The peer ended its input: nothing more is read, and once the core
    /// closes it and its output is written it goes without lingering.
    input_ended: Cell<bool>,
    /// Gone: the tasks end.
    dead: Cell<bool>,
}

/// A connection's socket, for the poll operations that wait on it (which
/// hold the connection while they wait).
#[cfg(unix)]
impl std::os::fd::AsFd for Conn {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// The thread's connections and the way back to the core.
struct Local {
    conns: RefCell<AHashMap<u64, Rc<Conn>>>,
    /// The thread's one receive buffer (readiness reads).
    #[cfg(unix)]
    read_buffer: RefCell<Box<[u8]>>,
    /// Where idle connections wait (none if it could not be made: each
    /// connection then has a reader task, as on other drivers).
    #[cfg(unix)]
    watch: Option<Watch>,
    inbox: Arc<Inbox>,
    max_outbound: usize,
    /// The server is shutting down: connections let go without lingering.
    stopping: Cell<bool>,
    /// Readers waiting for room in the hub's inbox (backpressure).
    paused_readers: RefCell<Vec<Waker>>,
    /// Connections given output this turn, written at its end.
    dirty: RefCell<Vec<Rc<Conn>>>,
    /// Each connection's reader task, while it has one (in a handshake;
    /// always on IOCP): ended with the connection. Kept here, not in
    /// [`Conn`], as most connections have none.
    readers: RefCell<AHashMap<u64, JoinHandle<()>>>,
    /// Each waiting writer's waker, while a send is in flight or it
    /// lingers: woken when the connection is let go or the server stops.
    writers: RefCell<AHashMap<u64, Waker>>,
}

impl Local {
    /// Removes a connection and ends its tasks. `from_reader` is set when
    /// the reader itself asks, so it is not cancelled mid-poll.
    fn forget(&self, conn: &Conn, from_reader: bool) {
        conn.dead.set(true);
        // Out of the watch before the socket can close.
        #[cfg(unix)]
        self.unwatch(conn);
        self.wake_writer(conn.id);
        let reader = self.readers.borrow_mut().remove(&conn.id.get());
        if let Some(reader) = reader {
            if from_reader {
                reader.detach();
            } else {
                drop(reader);
            }
        }
        self.conns.borrow_mut().remove(&conn.id.get());
    }

    /// Wakes the connection's writer, if one waits.
    fn wake_writer(&self, id: ConnId) {
        let waker = self.writers.borrow_mut().remove(&id.get());
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Waits until polled again on `waker` (or woken by `wake_writer`).
    fn park_writer(&self, id: ConnId, waker: &Waker) {
        self.writers.borrow_mut().insert(id.get(), waker.clone());
    }

    /// The writer is past its wait: no waker of its is kept.
    fn unpark_writer(&self, id: ConnId) {
        self.writers.borrow_mut().remove(&id.get());
    }

    /// The peer ended its input: the core hears it (and closes the
    /// connection after its answers); nothing more is read.
    fn end_input(&self, conn: &Conn) {
        conn.input_ended.set(true);
        #[cfg(unix)]
        self.unwatch(conn);
        self.inbox.send(Event::InputEnded { conn: conn.id });
    }

    /// The peer went away or the socket failed: tell the core.
    fn lose(&self, conn: &Conn, from_reader: bool) {
        if conn.dead.get() {
            return;
        }
        self.forget(conn, from_reader);
        self.inbox.send(Event::Closed { conn: conn.id });
    }
}

pub(crate) async fn run(mut context: ThreadContext) {
    let local = Rc::new(Local {
        conns: RefCell::new(AHashMap::new()),
        #[cfg(unix)]
        read_buffer: RefCell::new(vec![0; LARGE_READ].into_boxed_slice()),
        #[cfg(unix)]
        watch: Watch::new(),
        inbox: context.inbox.clone(),
        max_outbound: context.max_outbound,
        stopping: Cell::new(false),
        paused_readers: RefCell::new(Vec::new()),
        dirty: RefCell::new(Vec::new()),
        readers: RefCell::new(AHashMap::new()),
        writers: RefCell::new(AHashMap::new()),
    });
    #[cfg(unix)]
    if local.watch.is_some() {
        compio::runtime::spawn(watch_loop(local.clone())).detach();
    }
    let mut stop_deadline: Option<Instant> = None;
    // Commands were left in the mailbox at the end of the last turn.
    let mut backlog = false;
    loop {
        if let Some(deadline) = stop_deadline
            && (local.conns.borrow().is_empty() || Instant::now() >= deadline)
        {
            break;
        }
        if backlog {
            yield_now().await;
        } else if stop_deadline.is_some() {
            let _ = compio::time::timeout(Duration::from_millis(10), context.signal.wait()).await;
        } else {
            context.signal.wait().await;
        }
        resume_readers(&local);
        let mut budget = COMMANDS_PER_TURN;
        backlog = false;
        while let Some(command) = context.mailbox.pop() {
            match command {
                Command::Adopt {
                    conn,
                    stream,
                    tls,
                    web,
                } => adopt(&local, conn, stream, tls.as_ref(), web.as_ref()),
                Command::Send {
                    conn,
                    bytes,
                    priority,
                } => queue(&local, conn, &bytes, priority),
                Command::Broadcast {
                    to,
                    except,
                    bytes,
                    priority,
                } => {
                    for conn in local_recipients(&to, except, context.index, context.threads) {
                        queue(&local, conn, &bytes, priority);
                    }
                }
                Command::Close { conn } => {
                    let found = local.conns.borrow().get(&conn.get()).cloned();
                    if let Some(found) = found {
                        start_closing(&local, &found);
                    }
                }
                Command::Panic => panic!("injected panic on I/O thread {}", context.index),
                Command::Stop => {
                    for mut acceptor in context.acceptors.drain(..) {
                        acceptor.stop();
                    }
                    stop_deadline = Some(Instant::now() + SHUTDOWN_FLUSH_LIMIT);
                    local.stopping.set(true);
                    let all: Vec<Rc<Conn>> = local.conns.borrow().values().cloned().collect();
                    for conn in all {
                        conn.closing.set(true);
                        // A lingering writer lets go now.
                        local.wake_writer(conn.id);
                        ensure_writer(&local, &conn);
                    }
                }
            }
            budget -= 1;
            if budget == 0 {
                // Let the writers and the driver run: draining a mailbox
                // the core keeps filling would starve them, and queues would
                // grow until their clients were cut off as slow.
                backlog = true;
                break;
            }
        }
        // Writes left for the next turn come back at once, as commands do.
        backlog |= flush_dirty(&local);
    }
    let all: Vec<Rc<Conn>> = local.conns.borrow().values().cloned().collect();
    for conn in all {
        local.forget(&conn, false);
    }
}

/// Returns to the runtime once, so every other ready task runs and the
/// driver reaps completions before this task goes on.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

fn adopt(
    local: &Rc<Local>,
    id: ConnId,
    stream: StdTcpStream,
    tls: Option<&TlsAcceptor>,
    web: Option<&Arc<WebSettings>>,
) {
    let transport = match Transport::new(tls, web, Instant::now()) {
        Ok(transport) => transport,
        Err(error) => {
            tracing::warn!(conn = %id, %error, "cannot start TLS");
            local.inbox.send(Event::Closed { conn: id });
            return;
        }
    };
    #[cfg(unix)]
    let attached = stream.set_nodelay(true).map(|()| stream);
    #[cfg(not(unix))]
    let attached = stream
        .set_nodelay(true)
        .and_then(|()| TcpStream::from_std(stream));
    let stream = match attached {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(conn = %id, %error, "cannot adopt socket");
            local.inbox.send(Event::Closed { conn: id });
            return;
        }
    };
    let conn = Rc::new(Conn {
        id,
        stream,
        out: RefCell::new(OutQueue::default()),
        transport: RefCell::new(transport),
        in_flight: Cell::new(0),
        writing: Cell::new(false),
        dirty: Cell::new(false),
        #[cfg(unix)]
        watched: Cell::new(false),
        closing: Cell::new(false),
        lingering: Cell::new(false),
        input_ended: Cell::new(false),
        dead: Cell::new(false),
    });
    local.conns.borrow_mut().insert(id.get(), conn.clone());
    // A connection in a handshake (TLS, an HTTP request) reads on its own,
    // under the handshake's deadline, then joins the watch.
    #[cfg(unix)]
    if conn.transport.borrow().handshake_deadline().is_none() && local.watch_conn(&conn) {
        return;
    }
    #[cfg(unix)]
    let reader = compio::runtime::spawn(read_loop_ready(local.clone(), conn.clone()));
    #[cfg(not(unix))]
    let reader = compio::runtime::spawn(read_loop_own(local.clone(), conn.clone()));
    local.readers.borrow_mut().insert(id.get(), reader);
}

/// Makes sure a writer runs for `conn` (it ends when nothing is left).
fn ensure_writer(local: &Rc<Local>, conn: &Rc<Conn>) {
    if conn.writing.replace(true) {
        return;
    }
    compio::runtime::spawn(write_loop(local.clone(), conn.clone())).detach();
}

/// Marks `conn` closing: its queued output goes, then it ends, within
/// [`closing::CLOSE_FLUSH_LIMIT`]; a peer that reads nothing is reset then
/// (the core forgot the connection already).
fn start_closing(local: &Rc<Local>, conn: &Rc<Conn>) {
    if !conn.closing.replace(true) {
        // Weak: a connection that ends normally is not kept for the wait.
        let (local, conn) = (local.clone(), Rc::downgrade(conn));
        compio::runtime::spawn(async move {
            compio::time::sleep(closing::CLOSE_FLUSH_LIMIT).await;
            let Some(conn) = conn.upgrade() else {
                return;
            };
            if !conn.dead.get() && !conn.lingering.get() {
                tracing::info!(conn = %conn.id, "closed connection not reading its last bytes; reset");
                closing::abort(&conn.stream);
                local.forget(&conn, false);
            }
        })
        .detach();
    }
    ensure_writer(local, conn);
}

fn queue(local: &Rc<Local>, id: ConnId, lines: &[u8], priority: Priority) {
    // This runs once per recipient of every line: the common case only
    // borrows; the connection is cloned out of the map once per turn (to
    // be written at its end) or when the client may be too slow.
    let conn = {
        let conns = local.conns.borrow();
        let Some(conn) = conns.get(&id.get()) else {
            return;
        };
        let queued = conn.out.borrow_mut().push(lines, priority);
        // What the kernel already holds does not count against the client.
        let slow = closing::too_slow(
            queued.saturating_sub(conn.in_flight.get()),
            local.max_outbound,
        );
        if !slow {
            if !conn.writing.get() && !conn.dirty.replace(true) {
                local.dirty.borrow_mut().push(conn.clone());
            }
            return;
        }
        conn.clone()
    };
    // One turn can bring many lines at once: see what the socket takes
    // before judging the client (the writer, if one runs, already did).
    if !conn.writing.get() {
        send_now(local, &conn, false);
    }
    let queued = conn.out.borrow().queued();
    if !conn.dead.get()
        && closing::too_slow(
            queued.saturating_sub(conn.in_flight.get()),
            local.max_outbound,
        )
    {
        tracing::warn!(conn = %id, queued, "slow consumer");
        closing::abort(&conn.stream);
        local.forget(&conn, false);
        local.inbox.send(Event::SlowConsumer { conn: id });
    }
}

/// Most connections written directly in one turn. A turn of broadcasts
/// can give output to thousands of connections (S2: 256 lines to 500
/// each), and writing them all before the next look at the mailbox and
/// the completions held every line behind the whole pass: S2's p99 went
/// from about 0.3 s to 1.5-2.4 s, and queues grew past the slow-consumer
/// bound. The rest waits for the next turn, which comes at once; poll's
/// flush takes commands every 128 writes for the same reason (decision
/// 20).
const WRITES_PER_TURN: usize = 128;

/// Writes the connections given output, oldest first, at most
/// [`WRITES_PER_TURN`]; returns whether some are left for the next turn.
fn flush_dirty(local: &Rc<Local>) -> bool {
    // Taken out while writing, since a lost connection's handling borrows
    // the thread's state. Only the dispatcher's commands queue output, so
    // nothing joins the list meanwhile; what is left goes back in order,
    // the allocation kept for the next turn.
    let mut dirty = std::mem::take(&mut *local.dirty.borrow_mut());
    let now = dirty.len().min(WRITES_PER_TURN);
    for conn in dirty.drain(..now) {
        conn.dirty.set(false);
        send_now(local, &conn, false);
    }
    let left = !dirty.is_empty();
    *local.dirty.borrow_mut() = dirty;
    left
}

/// Writes what `conn` has queued: on Unix as far as the socket takes it
/// without blocking, with a writer task for the rest; on IOCP through a
/// writer task. A writer already running, or a closing connection (whose
/// writer also ends it), is left to its writer. Returns false when the
/// connection is lost (the send failed); `from_reader` as for
/// [`Local::forget`].
fn send_now(local: &Rc<Local>, conn: &Rc<Conn>, from_reader: bool) -> bool {
    // On IOCP the writer task reports a failed send itself.
    #[cfg(not(unix))]
    let _ = from_reader;
    if conn.dead.get() || conn.writing.get() {
        return !conn.dead.get();
    }
    #[cfg(unix)]
    if !conn.closing.get() {
        let flushed = conn.transport.borrow_mut().flush(
            &mut conn.out.borrow_mut(),
            &mut SendNow(&conn.stream),
            false,
        );
        match flushed {
            // Everything went (or the rest waits for a TLS handshake).
            Ok(true) => return true,
            // The socket is full: the writer waits for it.
            Ok(false) => {}
            Err(_) => {
                local.lose(conn, from_reader);
                return false;
            }
        }
    }
    ensure_writer(local, conn);
    true
}

/// The socket written from the dispatcher, never blocking: a send the
/// kernel cannot take now fails with `WouldBlock` (the socket itself may
/// be in blocking mode under io_uring).
#[cfg(unix)]
struct SendNow<'a>(&'a StdTcpStream);

#[cfg(unix)]
impl io::Write for SendNow<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(bytes)])
    }

    fn write_vectored(&mut self, slices: &[io::IoSlice<'_>]) -> io::Result<usize> {
        use rustix::net::{SendAncillaryBuffer, SendFlags, sendmsg};
        #[cfg(not(target_vendor = "apple"))]
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        // No MSG_NOSIGNAL there; Rust's runtime ignores SIGPIPE anyway.
        #[cfg(target_vendor = "apple")]
        let flags = SendFlags::DONTWAIT;
        loop {
            match sendmsg(self.0, slices, &mut SendAncillaryBuffer::default(), flags) {
                Err(rustix::io::Errno::INTR) => {}
                sent => return sent.map_err(io::Error::from),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Waits for input with a one-shot poll operation (no buffer while
/// waiting), then receives without blocking into the thread's buffer.
#[cfg(unix)]
async fn read_loop_ready(local: Rc<Local>, conn: Rc<Conn>) {
    use compio::driver::op::{Interest, PollOnce};
    loop {
        let poll = PollOnce::new(conn.clone(), Interest::Readable);
        let Some(BufResult(ready, _)) =
            within_handshake(&local, &conn, compio::runtime::submit(poll)).await
        else {
            return;
        };
        if !conn.closing.get() {
            room_in_inbox(&local).await;
        }
        let read = match ready {
            Ok(_) => match receive_now(&local, &conn.stream) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                read => read,
            },
            Err(error) => Err(error),
        };
        if !handle_read(&local, &conn, read) {
            return;
        }
        // The handshake is over: the connection waits in the watch from
        // now on, and this task ends.
        if conn.transport.borrow().handshake_deadline().is_none() && local.watch_conn(&conn) {
            let me = local.readers.borrow_mut().remove(&conn.id.get());
            if let Some(me) = me {
                me.detach();
            }
            return;
        }
    }
}

/// Where a thread's idle connections wait on Unix drivers (decision 83):
/// one epoll (kqueue) set of their sockets, level-triggered, keyed by
/// connection id, itself waited on with one poll operation by one task.
/// A connection waiting with an operation and a task of its own cost
/// about 350 bytes more (the task, its operation, its executor slot).
#[cfg(unix)]
struct Watch {
    poller: Rc<polling::Poller>,
    events: RefCell<polling::Events>,
    /// The keys of one round of ready sockets (kept: no allocation a round).
    ready: RefCell<Vec<usize>>,
}

#[cfg(unix)]
impl Watch {
    fn new() -> Option<Self> {
        match polling::Poller::new() {
            Ok(poller) => Some(Self {
                poller: Rc::new(poller),
                events: RefCell::new(polling::Events::new()),
                ready: RefCell::new(Vec::new()),
            }),
            Err(error) => {
                tracing::warn!(%error, "no poller for idle sockets; each waits on its own");
                None
            }
        }
    }
}

#[cfg(unix)]
impl Local {
    /// Takes a connection out of the watch, if it is in it.
    fn unwatch(&self, conn: &Conn) {
        if conn.watched.replace(false)
            && let Some(watch) = &self.watch
            && let Err(error) = watch.poller.delete(&conn.stream)
        {
            tracing::debug!(conn = %conn.id, %error, "cannot unwatch socket");
        }
    }

    /// Puts a connection in the watch; `false` if there is none or the
    /// socket cannot join it (the caller gives it a reader of its own).
    fn watch_conn(&self, conn: &Conn) -> bool {
        let Some(watch) = &self.watch else {
            return false;
        };
        let Ok(key) = usize::try_from(conn.id.get()) else {
            return false;
        };
        // SAFETY: the socket stays open while registered: `forget`
        // deletes it from the poller before the connection can be dropped.
        #[allow(unsafe_code)]
        let added = unsafe {
            watch.poller.add_with_mode(
                &conn.stream,
                polling::Event::readable(key),
                polling::PollMode::Level,
            )
        };
        match added {
            Ok(()) => {
                conn.watched.set(true);
                true
            }
            Err(error) => {
                tracing::debug!(conn = %conn.id, %error, "cannot watch socket; it reads on its own");
                false
            }
        }
    }
}

/// The watch's task: reads every ready socket once a round (a round ends
/// with a yield, so a busy thread's other tasks run), and when none is
/// ready waits for the set with one poll operation.
#[cfg(unix)]
async fn watch_loop(local: Rc<Local>) {
    use compio::driver::op::{Interest, PollOnce};
    let Some(watch) = &local.watch else {
        return;
    };
    loop {
        {
            let mut events = watch.events.borrow_mut();
            events.clear();
            if let Err(error) = watch.poller.wait(&mut events, Some(Duration::ZERO))
                && error.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(%error, "the idle-socket poller failed");
            }
            let mut ready = watch.ready.borrow_mut();
            ready.clear();
            ready.extend(events.iter().map(|event| event.key));
        }
        if watch.ready.borrow().is_empty() {
            let poll = PollOnce::new(watch.poller.clone(), Interest::Readable);
            let BufResult(waited, _) = compio::runtime::submit(poll).await;
            if let Err(error) = waited {
                tracing::error!(%error, "cannot wait for the idle-socket poller");
                compio::time::sleep(Duration::from_millis(10)).await;
            }
            continue;
        }
        let ready = std::mem::take(&mut *watch.ready.borrow_mut());
        for &key in &ready {
            room_in_inbox(&local).await;
            let found = local.conns.borrow().get(&(key as u64)).cloned();
            let Some(conn) = found.filter(|conn| conn.watched.get() && !conn.dead.get()) else {
                continue;
            };
            match receive_now(&local, &conn.stream) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                read => {
                    handle_read(&local, &conn, read);
                }
            }
        }
        *watch.ready.borrow_mut() = ready;
        yield_now().await;
    }
}

/// One non-blocking receive into the thread's buffer; what arrived is
/// copied out. `Ok(None)` is the end of the stream.
#[cfg(unix)]
fn receive_now(local: &Local, stream: &StdTcpStream) -> io::Result<Option<Vec<u8>>> {
    use compio::driver::op::RecvFlags;
    let mut buffer = local.read_buffer.borrow_mut();
    loop {
        match rustix::net::recv(stream, &mut buffer[..], RecvFlags::DONTWAIT) {
            Ok((0, _)) => return Ok(None),
            Ok((n, _)) => return Ok(Some(buffer[..n].to_vec())),
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
    }
}

/// One receive in flight at a time, into a buffer sized by recent reads.
#[cfg(not(unix))]
async fn read_loop_own(local: Rc<Local>, conn: Rc<Conn>) {
    let mut capacity = SMALL_READ;
    loop {
        // Checked before the receive is issued: a receive in flight owns
        // what it reads, so each connection may bring one more buffer.
        room_in_inbox(&local).await;
        let Some(read) =
            within_handshake(&local, &conn, read_own(&conn.stream, &mut capacity)).await
        else {
            return;
        };
        if !handle_read(&local, &conn, read) {
            return;
        }
    }
}

/// Runs a read wait, cut off at the connection's handshake deadline while
/// a TLS handshake is going on: a client that does not finish it in time
/// (a slowloris) is closed, and the core hears of it as lost. `None`: cut.
async fn within_handshake<T>(
    local: &Local,
    conn: &Conn,
    wait: impl Future<Output = T>,
) -> Option<T> {
    let deadline = conn.transport.borrow().handshake_deadline();
    let Some(deadline) = deadline else {
        return Some(wait.await);
    };
    let left = deadline.saturating_duration_since(Instant::now());
    // Boxed: a timer is needed only until the handshake is over, and
    // inline it would grow every idle connection's reader for good.
    match Box::pin(compio::time::timeout(left, wait)).await {
        Ok(done) => Some(done),
        Err(_) => {
            let peer = conn.stream.peer_addr().ok();
            tracing::info!(conn = %conn.id, ?peer, "handshake (TLS, HTTP request) timed out; closing");
            local.lose(conn, true);
            None
        }
    }
}

/// Waits until the hub's inbox has room for more input (the engine's
/// backpressure): the reader stops reading, its client's input waits in
/// the kernel, and TCP slows the client down.
async fn room_in_inbox(local: &Local) {
    poll_fn(|cx| {
        if local.inbox.accepts_input() {
            return Poll::Ready(());
        }
        local.paused_readers.borrow_mut().push(cx.waker().clone());
        if !local.inbox.pause_reading() {
            return Poll::Ready(());
        }
        Poll::Pending
    })
    .await;
}

/// Wakes the readers that wait for room in the inbox, once there is some
/// (the hub wakes this thread's dispatcher then).
fn resume_readers(local: &Local) {
    if local.paused_readers.borrow().is_empty() || !local.inbox.accepts_input() {
        return;
    }
    let waiting = std::mem::take(&mut *local.paused_readers.borrow_mut());
    for reader in waiting {
        reader.wake();
    }
}

/// Passes what a receive brought to the core. Returns false when the
/// connection is over. Not async: the reader's future stays small.
fn handle_read(local: &Rc<Local>, conn: &Rc<Conn>, read: io::Result<Option<Vec<u8>>>) -> bool {
    match read {
        Ok(Some(bytes)) if conn.closing.get() => drop(bytes),
        Ok(Some(bytes)) if !conn.transport.borrow().is_plain() => {
            let received = conn.transport.borrow_mut().received(&bytes);
            match received {
                Ok(received) => {
                    if let Some(signal) = received.signal {
                        local.inbox.send(signal_event(conn.id, signal));
                    }
                    if !received.plaintext.is_empty() {
                        local.inbox.send(Event::Received {
                            conn: conn.id,
                            bytes: received.plaintext,
                        });
                    }
                    if received.peer_closed {
                        local.end_input(conn);
                        return false;
                    }
                    if let Some(why) = received.ending {
                        // Over, with bytes still to send (an HTTP answer, a
                        // WebSocket close): ended as after a TLS error.
                        tracing::debug!(conn = %conn.id, %why, "web connection ends");
                        local.inbox.send(Event::Closed { conn: conn.id });
                        start_closing(local, conn);
                        return true;
                    }
                    // Handshake replies to send, or the handshake is done
                    // and queued lines may now leave.
                    let transport = conn.transport.borrow();
                    if transport.wants_write() || !conn.out.borrow().is_empty() {
                        drop(transport);
                        if !send_now(local, conn, true) {
                            return false;
                        }
                    }
                }
                Err(error) => {
                    // Garbage, a broken handshake: this connection only.
                    let peer = conn.stream.peer_addr().ok();
                    tracing::info!(conn = %conn.id, ?peer, %error, "transport failed; closing");
                    // The core forgets it now; the socket ends as a
                    // closed connection does: the alert saying why (all
                    // the transport will still send), then our side shut
                    // down and a bounded linger, so the alert is not lost
                    // to a reset. Reading goes on, discarding.
                    local.inbox.send(Event::Closed { conn: conn.id });
                    start_closing(local, conn);
                }
            }
        }
        Ok(Some(bytes)) => local.inbox.send(Event::Received {
            conn: conn.id,
            bytes,
        }),
        Ok(None) | Err(_) if conn.closing.get() => {
            local.forget(conn, true);
            return false;
        }
        Ok(None) => {
            local.end_input(conn);
            return false;
        }
        Err(_) => {
            local.lose(conn, true);
            return false;
        }
    }
    true
}

#[cfg(not(unix))]
async fn read_own(stream: &TcpStream, capacity: &mut usize) -> io::Result<Option<Vec<u8>>> {
    let mut reader = stream;
    let BufResult(result, buffer) = reader.read(Vec::with_capacity(*capacity)).await;
    let n = result?;
    if n == 0 {
        return Ok(None);
    }
    if n == *capacity {
        *capacity = (*capacity * 2).min(LARGE_READ);
    } else if n < *capacity / 4 {
        *capacity = (*capacity / 2).max(SMALL_READ);
    }
    Ok(Some(buffer))
}

/// The writer on Unix: what the dispatcher's send left over goes out as
/// the socket takes it, the same way (`Transport::flush`, never blocking,
/// through the layers), with one poll operation waiting for room between
/// sends. It ends when all is written (lingering first, if closing).
#[cfg(unix)]
async fn write_loop(local: Rc<Local>, conn: Rc<Conn>) {
    use compio::driver::op::{Interest, PollOnce};
    loop {
        if conn.dead.get() {
            return;
        }
        let flushed = conn.transport.borrow_mut().flush(
            &mut conn.out.borrow_mut(),
            &mut SendNow(&conn.stream),
            conn.closing.get(),
        );
        match flushed {
            // All written, or the rest waits for the handshake (the reader
            // sends it once the handshake is done).
            Ok(true) => {
                if conn.closing.get() {
                    linger_and_close(&local, &conn).await;
                }
                conn.writing.set(false);
                return;
            }
            Ok(false) => {
                let room = compio::runtime::submit(PollOnce::new(conn.clone(), Interest::Writable));
                let Some(BufResult(ready, _)) = unless_dead(&local, &conn, room).await else {
                    return;
                };
                if ready.is_err() {
                    local.lose(&conn, false);
                    return;
                }
            }
            Err(_) => {
                local.lose(&conn, false);
                return;
            }
        }
    }
}

#[cfg(not(unix))]
async fn write_loop(local: Rc<Local>, conn: Rc<Conn>) {
    if !conn.transport.borrow().is_plain() {
        return write_loop_layered(local, conn).await;
    }
    loop {
        if conn.dead.get() {
            return;
        }
        let Some(batch) = conn.out.borrow_mut().take_batch() else {
            if conn.closing.get() {
                linger_and_close(&local, &conn).await;
            }
            conn.writing.set(false);
            return;
        };
        conn.in_flight.set(batch.unsent().len());
        let start = batch.start;
        let mut writer = &conn.stream;
        let send = writer.write(batch.bytes.slice(start..));
        // A connection let go meanwhile (a slow consumer) ends the send:
        // dropping it cancels the operation, which releases the socket.
        let Some(BufResult(result, sent)) = unless_dead(&local, &conn, send).await else {
            return;
        };
        conn.in_flight.set(0);
        let batch = Batch {
            bytes: sent.into_inner(),
            start,
        };
        match result {
            Ok(written) if written > 0 => conn.out.borrow_mut().written(batch, written),
            _ => {
                local.lose(&conn, false);
                return;
            }
        }
    }
}

/// The writer of a TLS or web connection: the engine's transport turns
/// queued lines into wire bytes (ciphertext, WebSocket frames) one bounded
/// chunk at a time, and each chunk is sent whole before the next is made.
#[cfg(not(unix))]
async fn write_loop_layered(local: Rc<Local>, conn: Rc<Conn>) {
    let mut buffer = Vec::new();
    loop {
        if conn.dead.get() {
            return;
        }
        let made = conn.transport.borrow_mut().next_wire(
            &mut conn.out.borrow_mut(),
            conn.closing.get(),
            &mut buffer,
        );
        if made.is_err() {
            local.lose(&conn, false);
            return;
        }
        if buffer.is_empty() {
            // Nothing to send: all written (then close_notify is out if
            // closing), or the rest waits for the handshake.
            if conn.closing.get() {
                linger_and_close(&local, &conn).await;
            }
            conn.writing.set(false);
            return;
        }
        let mut writer = &conn.stream;
        let send = writer.write_all(std::mem::take(&mut buffer));
        let Some(BufResult(result, sent)) = unless_dead(&local, &conn, send).await else {
            return;
        };
        if result.is_err() {
            local.lose(&conn, false);
            return;
        }
        buffer = sent;
        buffer.clear();
    }
}

/// Runs `operation` unless the connection is let go first (its writer is
/// woken then); `None` in that case.
async fn unless_dead<T>(
    local: &Local,
    conn: &Conn,
    operation: impl Future<Output = T>,
) -> Option<T> {
    let mut operation = std::pin::pin!(operation);
    let done = poll_fn(|cx| {
        if conn.dead.get() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(done) = operation.as_mut().poll(cx) {
            return Poll::Ready(Some(done));
        }
        local.park_writer(conn.id, cx.waker());
        Poll::Pending
    })
    .await;
    local.unpark_writer(conn.id);
    done
}

/// The core closed the connection and everything is written: end our
/// side, then linger for the peer as long as `chatd_engine::closing`
/// rules for how the connection ends (which a shutdown may change while
/// it lingers), and let go.
async fn linger_and_close(local: &Local, conn: &Conn) {
    conn.lingering.set(true);
    closing::finish(&conn.stream);
    // A peer that ended its input already hung up its side: nothing to
    // wait for.
    if conn.input_ended.get() {
        local.forget(conn, false);
        return;
    }
    let since = Instant::now();
    loop {
        let deadline = since + ending(local).linger();
        let left = deadline.saturating_duration_since(Instant::now());
        if conn.dead.get() || left.is_zero() {
            break;
        }
        // Woken when the reader sees the peer hang up (the connection is
        // let go) or the server starts stopping; then look again.
        let mut waited = false;
        let woken = poll_fn(|cx| {
            if waited || conn.dead.get() {
                return Poll::Ready(());
            }
            waited = true;
            local.park_writer(conn.id, cx.waker());
            Poll::Pending
        });
        let _ = compio::time::timeout(left, woken).await;
        local.unpark_writer(conn.id);
    }
    if !conn.dead.get() {
        closing::discard_unread(&conn.stream);
    }
    local.forget(conn, false);
}

/// How connections the core closed end now.
fn ending(local: &Local) -> Ending {
    if local.stopping.get() {
        Ending::Stopping
    } else {
        Ending::Closed
    }
}
