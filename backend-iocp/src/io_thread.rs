//! One I/O thread: a compio runtime, the connections it owns, and a
//! dispatcher task that runs the core's commands.
//!
//! Every connection has a reader task that keeps one receive in flight and
//! hands what arrives to the core's thread. A writer task exists only while
//! output is queued: it hands the kernel one vectored send of up to
//! [`MAX_SLICES`] shared lines at a time and ends when the queue is empty,
//! so an idle connection costs one task, not two.
//!
//! Reads own a buffer while in flight, so idle connections are where memory
//! goes. On io_uring the reader uses compio's buffer pool (provided
//! buffers): the kernel picks a buffer only when data arrives, and an idle
//! connection holds none. Other drivers (IOCP, the polling fallback) take a
//! pool buffer when the receive is submitted, so there each connection
//! reads into its own small buffer, which doubles while reads fill it and
//! shrinks back when they do not.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::net::TcpStream as StdTcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::Bytes;
use chatd_core::{ConnId, Priority};
use chatd_engine::SHUTDOWN_FLUSH_LIMIT;
use chatd_engine::hub::{Command, Event, Inbox, Mailbox, local_recipients};
use chatd_engine::out_queue::{MAX_SLICES, OutQueue};
use compio::BufResult;
use compio::io::{AsyncRead, AsyncReadManaged, AsyncWrite};
use compio::net::TcpStream;
use compio::runtime::JoinHandle;
use compio::smallvec::SmallVec;

use crate::acceptor::Acceptor;
use crate::signal::Signal;

/// Bytes asked for per receive from the buffer pool.
pub(crate) const POOL_BUFFER: usize = 4096;
/// Smallest and largest own read buffer (drivers without provided buffers).
const SMALL_READ: usize = 256;
const LARGE_READ: usize = 64 * 1024;
/// How long a connection the core closed may wait for its peer to hang up
/// before its socket is dropped anyway.
const LINGER: Duration = Duration::from_secs(2);

/// How the reader gets its buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadStrategy {
    /// io_uring provided buffers from the runtime's pool.
    Pool,
    /// A per-connection buffer that grows only while reads fill it.
    Own,
}

/// What one I/O thread needs.
pub(crate) struct ThreadContext {
    pub(crate) index: usize,
    pub(crate) threads: usize,
    pub(crate) max_outbound: usize,
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) mailbox: Arc<Mailbox>,
    pub(crate) signal: Arc<Signal>,
    pub(crate) acceptor: Option<Acceptor>,
    pub(crate) strategy: ReadStrategy,
}

struct Conn {
    id: ConnId,
    stream: TcpStream,
    out: RefCell<OutQueue>,
    /// Bytes handed to the kernel by the writer and not yet completed.
    in_flight: Cell<usize>,
    /// A writer task is running.
    writing: Cell<bool>,
    /// The writer, while it lingers after shutting down.
    writer: Cell<Option<Waker>>,
    reader: Cell<Option<JoinHandle<()>>>,
    /// The core closed it: flush, shut down, then let go.
    closing: Cell<bool>,
    /// Gone: the tasks end.
    dead: Cell<bool>,
}

impl Conn {
    fn wake_writer(&self) {
        if let Some(waker) = self.writer.take() {
            waker.wake();
        }
    }
}

/// The thread's connections and the way back to the core.
struct Local {
    conns: RefCell<AHashMap<u64, Rc<Conn>>>,
    inbox: Arc<Inbox>,
    max_outbound: usize,
    strategy: ReadStrategy,
}

impl Local {
    /// Removes a connection and ends its tasks. `from_reader` is set when
    /// the reader itself asks, so it is not cancelled mid-poll.
    fn forget(&self, conn: &Conn, from_reader: bool) {
        conn.dead.set(true);
        conn.wake_writer();
        if let Some(reader) = conn.reader.take() {
            if from_reader {
                reader.detach();
            } else {
                drop(reader);
            }
        }
        self.conns.borrow_mut().remove(&conn.id.get());
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
        inbox: context.inbox.clone(),
        max_outbound: context.max_outbound,
        strategy: context.strategy,
    });
    let mut stop_deadline: Option<Instant> = None;
    loop {
        match stop_deadline {
            None => context.signal.wait().await,
            Some(deadline) => {
                if local.conns.borrow().is_empty() || Instant::now() >= deadline {
                    break;
                }
                let _ =
                    compio::time::timeout(Duration::from_millis(10), context.signal.wait()).await;
            }
        }
        while let Some(command) = context.mailbox.pop() {
            match command {
                Command::Adopt { conn, stream } => adopt(&local, conn, stream),
                Command::Send {
                    conn,
                    bytes,
                    priority,
                } => queue(&local, conn, bytes, priority),
                Command::Broadcast {
                    to,
                    except,
                    bytes,
                    priority,
                } => {
                    for conn in local_recipients(&to, except, context.index, context.threads) {
                        queue(&local, conn, bytes.clone(), priority);
                    }
                }
                Command::Close { conn } => {
                    let found = local.conns.borrow().get(&conn.get()).cloned();
                    if let Some(found) = found {
                        found.closing.set(true);
                        ensure_writer(&local, &found);
                    }
                }
                Command::Stop => {
                    if let Some(mut acceptor) = context.acceptor.take() {
                        acceptor.stop();
                    }
                    stop_deadline = Some(Instant::now() + SHUTDOWN_FLUSH_LIMIT);
                    let all: Vec<Rc<Conn>> = local.conns.borrow().values().cloned().collect();
                    for conn in all {
                        conn.closing.set(true);
                        ensure_writer(&local, &conn);
                    }
                }
            }
        }
    }
    let all: Vec<Rc<Conn>> = local.conns.borrow().values().cloned().collect();
    for conn in all {
        local.forget(&conn, false);
    }
}

fn adopt(local: &Rc<Local>, id: ConnId, stream: StdTcpStream) {
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
        in_flight: Cell::new(0),
        writing: Cell::new(false),
        writer: Cell::new(None),
        reader: Cell::new(None),
        closing: Cell::new(false),
        dead: Cell::new(false),
    });
    local.conns.borrow_mut().insert(id.get(), conn.clone());
    let reader = match local.strategy {
        ReadStrategy::Pool => compio::runtime::spawn(read_loop_pooled(local.clone(), conn.clone())),
        ReadStrategy::Own => compio::runtime::spawn(read_loop_own(local.clone(), conn.clone())),
    };
    conn.reader.set(Some(reader));
}

/// Makes sure a writer runs for `conn` (it ends when nothing is left).
fn ensure_writer(local: &Rc<Local>, conn: &Rc<Conn>) {
    if conn.writing.replace(true) {
        return;
    }
    compio::runtime::spawn(write_loop(local.clone(), conn.clone())).detach();
}

fn queue(local: &Rc<Local>, id: ConnId, bytes: Bytes, priority: Priority) {
    let Some(conn) = local.conns.borrow().get(&id.get()).cloned() else {
        return;
    };
    let queued = conn.out.borrow_mut().push(bytes, priority);
    // What the kernel already holds does not count against the client.
    if queued.saturating_sub(conn.in_flight.get()) > local.max_outbound {
        tracing::warn!(conn = %id, queued, "slow consumer");
        local.forget(&conn, false);
        local.inbox.send(Event::SlowConsumer { conn: id });
        return;
    }
    ensure_writer(local, &conn);
}

/// One receive in flight at a time, from the runtime's buffer pool. Each
/// strategy has its own loop so a task only reserves room for its own
/// receive future.
async fn read_loop_pooled(local: Rc<Local>, conn: Rc<Conn>) {
    loop {
        let read = read_pooled(&conn.stream).await;
        if !handle_read(&local, &conn, read).await {
            return;
        }
    }
}

/// One receive in flight at a time, into a buffer sized by recent reads.
async fn read_loop_own(local: Rc<Local>, conn: Rc<Conn>) {
    let mut capacity = SMALL_READ;
    loop {
        let read = read_own(&conn.stream, &mut capacity).await;
        if !handle_read(&local, &conn, read).await {
            return;
        }
    }
}

/// Passes what a receive brought to the core. Returns false when the
/// connection is over.
async fn handle_read(local: &Local, conn: &Conn, read: io::Result<Option<Vec<u8>>>) -> bool {
    match read {
        Ok(Some(bytes)) if conn.closing.get() => drop(bytes),
        Ok(Some(bytes)) => local.inbox.send(Event::Received {
            conn: conn.id,
            bytes,
        }),
        Err(error) if error.kind() == io::ErrorKind::ResourceBusy => {
            // The pool is empty for a moment: every buffer is on its way to
            // the core. Try again shortly.
            compio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(None) | Err(_) if conn.closing.get() => {
            local.forget(conn, true);
            return false;
        }
        Ok(None) | Err(_) => {
            local.lose(conn, true);
            return false;
        }
    }
    true
}

async fn read_pooled(stream: &TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut reader = stream;
    let buffer = reader.read_managed(POOL_BUFFER).await?;
    // Copy out and give the buffer back to the pool at once.
    Ok(buffer.filter(|b| !b.is_empty()).map(|b| b.to_vec()))
}

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

async fn write_loop(local: Rc<Local>, conn: Rc<Conn>) {
    loop {
        if conn.dead.get() {
            return;
        }
        let batch = conn.out.borrow_mut().take_batch(MAX_SLICES);
        if batch.is_empty() {
            if conn.closing.get() {
                linger_and_close(&local, &conn).await;
            }
            conn.writing.set(false);
            return;
        }
        let total: usize = batch.iter().map(Bytes::len).sum();
        conn.in_flight.set(total);
        let mut writer = &conn.stream;
        // One inline slot: the batch stays the heap vector it came in.
        let BufResult(result, batch) = writer
            .write_vectored(SmallVec::<[Bytes; 1]>::from_vec(batch))
            .await;
        conn.in_flight.set(0);
        match result {
            Ok(written) if written > 0 => conn.out.borrow_mut().written(batch.into_vec(), written),
            _ => {
                local.lose(&conn, false);
                return;
            }
        }
    }
}

/// The core closed the connection and everything is written: end our
/// side, give the peer a moment to hang up (closing with unread input would
/// reset the connection and could destroy the last lines), then let go.
async fn linger_and_close(local: &Local, conn: &Conn) {
    let mut writer = &conn.stream;
    let _ = writer.shutdown().await;
    let peer_gone = poll_fn(|cx| {
        if conn.dead.get() {
            return Poll::Ready(());
        }
        conn.writer.set(Some(cx.waker().clone()));
        Poll::Pending
    });
    let _ = compio::time::timeout(LINGER, peer_gone).await;
    local.forget(conn, false);
}
