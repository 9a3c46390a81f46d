//! The cluster bus: this node's link to the other nodes through Redis
//! (docs/CLUSTER.md). The core asks with [`BusRequest`]s and hears
//! [`BusEvent`]s; this component carries them.
//!
//! Threads, each with its own connections (blocking redis-rs connections
//! with timeouts; no async runtime):
//!
//! - **commands** (`commands.rs`): drains every queued request into one
//!   pipeline of EVALSHAs (one round trip for a burst of chat lines),
//!   renews the lease, watches the other nodes, and owns the session:
//!   connect, take the lease, have the subscriber subscribe, re-follow and
//!   catch up, report `Up`; on any error report `Down`, answer what was
//!   asked with `Unavailable`, and reconnect with backoff.
//! - **subscriber** (`subscriber.rs`): reads the node's channel and puts
//!   lines through the core's [`chatd_core::cluster::Sequencer`]
//!   (`rooms.rs`); whispers and presence go straight to the core.
//! - **history** (`history.rs`): answers `#history` / `#search` from the
//!   rooms' streams.

mod commands;
mod history;
mod link;
mod rooms;
mod scripts;
mod subscriber;

use std::collections::VecDeque;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use chatd_core::cluster::{BusEvent, BusRequest, NodeName};
use chatd_core::history_query::{HistoryAnswer, HistoryQuery, Shortfall};

use self::rooms::Rooms;
use self::scripts::Scripts;

/// How long a node's lease lasts without renewal.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(10);
/// How often the lease is renewed.
pub const RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// How often the other nodes' leases are looked at.
pub const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What the bus needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusSettings {
    /// The Redis URL, `redis://HOST:PORT/DB`.
    pub url: String,
    /// This node's name.
    pub node: NodeName,
    /// The history size: each room's stream keeps at least this many lines.
    pub history_size: usize,
}

/// What the bus hands the hub.
#[derive(Debug)]
pub enum Delivery {
    /// For the core's `handle_bus`.
    Event(BusEvent),
    /// The answer to a [`ClusterBus::query_history`].
    History(HistoryAnswer),
}

/// Where the bus delivers (the hub's inbox, or a test's channel). Called
/// from the bus's threads; must not block for long.
pub(crate) type Sink = dyn Fn(Delivery) + Send + Sync;

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The URL is not a Redis URL.
    #[error("invalid cluster URL {url:?}: {cause}")]
    Url {
        /// The URL given.
        url: String,
        /// The parser's word.
        cause: redis::RedisError,
    },
    /// Another live node holds this node's name (its lease is not ours).
    #[error("node name {0} is already in use by a live node")]
    NameInUse(NodeName),
    /// A thread could not be started.
    #[error("cannot start the cluster bus threads: {0}")]
    Threads(std::io::Error),
}

/// How the bus is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Running.
    No,
    /// Finish what is queued, give the lease back, leave the node set.
    Graceful,
    /// Stop at once and leave everything in Redis as it is, as a killed
    /// process would (tests: a node that dies).
    Crash,
}

/// Requests waiting for the command thread past which new ones are
/// answered `Unavailable` at once: Redis is not keeping up, and a client
/// is better told than kept waiting behind an unbounded queue.
const MAX_QUEUED: usize = 20_000;

/// What the threads share, behind [`Shared::state`].
#[derive(Debug)]
struct State {
    /// Requests waiting for the command thread (only while up).
    queue: VecDeque<BusRequest>,
    /// Follows and unfollows asked while down, for the command thread to
    /// apply (the hub never waits for the rooms' lock, which a gap read
    /// may hold for a round trip).
    deferred: Vec<BusRequest>,
    /// Nickname releases that could not be sent: sent at the next
    /// connection, before `Up` (so before the core claims anything again).
    /// A lost release would leave the name held by this live node.
    unreleased: std::collections::BTreeSet<chatd_core::Nick>,
    /// Connected, lease held, subscribed, caught up.
    up: bool,
    stop: Stop,
    /// The subscriber's current session: it subscribes once for each new
    /// value, and ends that session when `session_live` goes false.
    session: u64,
    session_live: bool,
    /// The last session the subscriber confirmed subscribed.
    subscribed: u64,
    /// A session the subscriber saw fail.
    broken: u64,
}

struct Shared {
    node: NodeName,
    history_size: usize,
    /// Our lease's value: tells our lease from another process's.
    token: String,
    client: redis::Client,
    scripts: Scripts,
    sink: Box<Sink>,
    state: Mutex<State>,
    /// Wakes the command thread (requests, stop, a broken session) and the
    /// subscriber (a new session, stop).
    wake: Condvar,
    rooms: Mutex<Rooms>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking bus thread ends the process (crash::exit_on_panic);
        // the data is still consistent enough to finish with.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn rooms(&self) -> MutexGuard<'_, Rooms> {
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn deliver(&self, event: BusEvent) {
        (self.sink)(Delivery::Event(event));
    }

    /// Answers a request that cannot reach Redis: every request that has
    /// an answer gets `Unavailable`; follows and unfollows are remembered
    /// for the next connection.
    fn answer_unavailable(&self, request: BusRequest) {
        match request.unavailable() {
            Ok(answer) => self.deliver(answer),
            Err(BusRequest::Follow(room)) => self.rooms().remember(&room),
            Err(BusRequest::Unfollow(room)) => self.rooms().unfollow(&room),
            Err(BusRequest::Release(nick)) => {
                tracing::debug!(%nick, "cluster down: a nickname release waits for the next connection");
                self.state().unreleased.insert(nick);
            }
            Err(_) => {
                // An announcement: the core announces a whole snapshot
                // when the bus is up.
                tracing::debug!("cluster down: an announcement is dropped");
            }
        }
    }
}

/// The cluster bus of one node. Dropping it stops it gracefully (see
/// [`ClusterBus::shutdown`]).
pub struct ClusterBus {
    shared: Arc<Shared>,
    history: Option<SyncSender<Box<HistoryQuery>>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ClusterBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterBus")
            .field("node", &self.shared.node)
            .finish_non_exhaustive()
    }
}

impl ClusterBus {
    /// Starts the bus: one connection attempt now, then its threads.
    ///
    /// Reachable Redis: the lease is taken, and `Up` is delivered before
    /// this returns. Unreachable: `Down` is delivered and the bus keeps
    /// trying in the background (100 ms doubling to 5 s). Fails only for
    /// a bad URL, or when another live node holds this node's name.
    pub fn start(
        settings: BusSettings,
        sink: impl Fn(Delivery) + Send + Sync + 'static,
    ) -> Result<Self, BusError> {
        let client = redis::Client::open(settings.url.as_str()).map_err(|cause| BusError::Url {
            url: settings.url.clone(),
            cause,
        })?;
        let shared = Arc::new(Shared {
            node: settings.node,
            history_size: settings.history_size,
            token: random_token(),
            client,
            scripts: Scripts::new(),
            sink: Box::new(sink),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                deferred: Vec::new(),
                unreleased: std::collections::BTreeSet::new(),
                up: false,
                stop: Stop::No,
                session: 0,
                session_live: false,
                subscribed: 0,
                broken: 0,
            }),
            wake: Condvar::new(),
            rooms: Mutex::new(Rooms::default()),
        });
        let mut bus = Self {
            shared: shared.clone(),
            history: None,
            threads: Vec::new(),
        };
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(run)
                .map_err(BusError::Threads)
        };
        let sub = shared.clone();
        bus.threads.push(spawn(
            "chatd-bus-sub",
            Box::new(move || subscriber::run(&sub)),
        )?);
        // The first attempt here, so a name in use is an error of start-up.
        let mut commands = commands::Commands::new(shared.clone());
        if let Err(error) = commands.connect() {
            if let commands::SessionError::NameInUse = error {
                // `bus` drops: the subscriber stops.
                return Err(BusError::NameInUse(shared.node.clone()));
            }
            tracing::warn!(%error, "cluster: Redis is not reachable yet; starting down, retrying");
            commands.fail(&error);
        }
        bus.threads
            .push(spawn("chatd-bus", Box::new(move || commands.run()))?);
        let (sender, queries) = std::sync::mpsc::sync_channel(history::QUEUE);
        let reader = shared.clone();
        bus.threads.push(spawn(
            "chatd-bus-history",
            Box::new(move || history::run(&reader, &queries)),
        )?);
        bus.history = Some(sender);
        Ok(bus)
    }

    /// This node's name.
    pub fn node(&self) -> &NodeName {
        &self.shared.node
    }

    /// Hands the bus one of the core's requests. While the bus is down,
    /// it is answered at once (`Unavailable`) through the sink.
    pub fn submit(&self, request: BusRequest) {
        let mut state = self.shared.state();
        if state.up && state.stop == Stop::No && state.queue.len() < MAX_QUEUED {
            state.queue.push_back(request);
            drop(state);
            self.shared.wake.notify_all();
        } else if matches!(request, BusRequest::Follow(_) | BusRequest::Unfollow(_)) {
            state.deferred.push(request);
        } else {
            drop(state);
            self.shared.answer_unavailable(request);
        }
    }

    /// Answers a room history or search query from the rooms' streams
    /// (through the sink, as [`Delivery::History`]). A full queue is
    /// answered `Busy` at once.
    pub fn query_history(&self, query: Box<HistoryQuery>) {
        let busy = |query: Box<HistoryQuery>| {
            (self.shared.sink)(Delivery::History(HistoryAnswer {
                request: query.request,
                records: Vec::new(),
                shortfall: Some(Shortfall::Busy),
            }));
        };
        match &self.history {
            Some(sender) => match sender.try_send(query) {
                Ok(()) => {}
                Err(TrySendError::Full(query) | TrySendError::Disconnected(query)) => busy(query),
            },
            None => busy(query),
        }
    }

    /// Whether the bus is up now (connected, lease held, caught up).
    pub fn is_up(&self) -> bool {
        self.shared.state().up
    }

    /// Stops gracefully: what is queued is sent, the lease is given back
    /// and the node leaves the node set and every followers set. Returns
    /// when the threads have ended (bounded by the connection timeouts).
    pub fn shutdown(mut self) {
        self.stop(Stop::Graceful);
    }

    /// Stops at once, leaving the lease to expire and everything else in
    /// Redis as it is: what a killed process leaves. For tests of node
    /// loss.
    pub fn crash(mut self) {
        self.stop(Stop::Crash);
    }

    fn stop(&mut self, how: Stop) {
        {
            let mut state = self.shared.state();
            if state.stop == Stop::No {
                state.stop = how;
            }
        }
        self.shared.wake.notify_all();
        // Ends the history thread once it has answered what it holds.
        self.history = None;
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a cluster bus thread panicked");
            }
        }
    }
}

impl Drop for ClusterBus {
    fn drop(&mut self) {
        self.stop(Stop::Graceful);
    }
}

/// 128 random bits, hex: our lease's value.
fn random_token() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No system randomness: the process id and the time still tell
        // this process from another with the same name.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return format!("{:x}-{now:x}", std::process::id());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
