//! The in-memory driver: the core alone, no sockets, virtual time.
//!
//! Bytes a client sends are delivered split at seeded random points, so
//! every transcript also checks that framing does not depend on how TCP
//! happens to cut the stream. Persisted records are encoded into per-room
//! byte logs exactly as on disk and recovered from those bytes on restart.
//! Operator passwords are verified at once, on this thread, and history
//! queries answered at once from the logs' bytes (whispers included: they
//! are kept in the log of the room their sender was in). Account
//! passwords are hashed at once (Argon2id with cheap parameters) and
//! account changes kept in memory, surviving a restart as a store on
//! disk would.
//!
//! The same driver is one node of the memory cluster
//! ([`crate::memory_cluster`]): there, what the core asks of the bus and
//! the history queries it cannot answer alone wait in order for the
//! cluster driver, which carries them out on the memory bus.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use std::sync::Arc;

use chatd_core::cluster::{BusEvent, BusRequest};
use chatd_core::history::{self, Record};
use chatd_core::history_query::{HistoryAnswer, HistoryQuery};
use chatd_core::{Account, AccountChange, Config, ConnId, Dialect, Output, RoomName, Server};

use crate::driver::{Driver, DriverError, RESTART_REASON, Received};

/// Unix time (ms) the virtual clock starts at: 2026-11-18 11:06:40 UTC.
pub const VIRTUAL_UNIX_START_MS: u64 = 1_795_000_000_000;

/// Runs transcripts against the core in memory.
#[derive(Debug)]
pub struct MemoryDriver {
    rng: SplitMix64,
    config: Config,
    server: Option<Server>,
    epoch: Instant,
    now: Instant,
    clients: HashMap<String, Client>,
    by_conn: HashMap<ConnId, String>,
    logs: BTreeMap<RoomName, Vec<u8>>,
    /// The account store: every account by folded name, kept across
    /// restarts.
    accounts: BTreeMap<String, Account>,
    /// Salts for new hashes: a counter, so runs are reproducible.
    salts: u64,
    next_port: u16,
    /// As a node of a memory cluster: bus requests and history queries,
    /// in the order the core emitted them. `None`: a single server, which
    /// answers queries itself and has no bus.
    external: Option<VecDeque<External>>,
}

/// What a node of the memory cluster asks beyond itself.
#[derive(Debug)]
pub(crate) enum External {
    /// A request for the bus.
    Bus(BusRequest),
    /// A history query, answered from the bus's streams.
    Query(HistoryQuery),
}

#[derive(Debug, Default)]
struct Client {
    conn: Option<ConnId>,
    inbox: Vec<u8>,
    closed_by_server: bool,
}

impl MemoryDriver {
    /// A driver whose chunking follows `seed`.
    pub fn new(seed: u64) -> Self {
        // Virtual time starts here; only differences from it matter.
        Self::at_epoch(seed, Instant::now())
    }

    /// A driver whose virtual clock starts at `epoch` (the nodes of a
    /// cluster share one).
    fn at_epoch(seed: u64, epoch: Instant) -> Self {
        Self {
            rng: SplitMix64(seed),
            config: Config::default(),
            server: None,
            epoch,
            now: epoch,
            clients: HashMap::new(),
            by_conn: HashMap::new(),
            logs: BTreeMap::new(),
            accounts: BTreeMap::new(),
            salts: 0,
            next_port: 40_000,
            external: None,
        }
    }

    /// One node of a memory cluster: its clock starts at `epoch`, and its
    /// bus requests and history queries wait for [`Self::take_external`].
    pub(crate) fn node(seed: u64, epoch: Instant) -> Self {
        Self {
            external: Some(VecDeque::new()),
            ..Self::at_epoch(seed, epoch)
        }
    }

    /// The next bus request or history query the core emitted, oldest
    /// first.
    pub(crate) fn take_external(&mut self) -> Option<External> {
        self.external.as_mut()?.pop_front()
    }

    /// Hands the core what its bus says, then does what it asks.
    pub(crate) fn handle_bus(&mut self, event: BusEvent) -> Result<(), DriverError> {
        let now = self.now;
        self.server()?.handle_bus(now, event);
        self.drain()
    }

    /// Hands the core the answer to one of its history queries.
    pub(crate) fn answer_query(&mut self, answer: HistoryAnswer) -> Result<(), DriverError> {
        let now = self.now;
        self.server()?.handle_history_answer(now, answer);
        self.drain()
    }

    /// Whether the server is running.
    pub(crate) fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// When the server's next timer is due, if it runs and has one.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.server.as_ref()?.poll_timeout()
    }

    /// Moves the clock to `when` (never back) and fires what is due then.
    pub(crate) fn advance_to(&mut self, when: Instant) -> Result<(), DriverError> {
        self.now = self.now.max(when);
        let now = self.now;
        while let Some(server) = self.server.as_mut()
            && let Some(deadline) = server.poll_timeout()
            && deadline <= now
        {
            server.handle_timeout(now);
            self.drain()?;
        }
        Ok(())
    }

    /// The process dies: no goodbye, no shutdown; its clients find their
    /// connections closed with nothing more to read. What persisted stays.
    pub(crate) fn kill(&mut self) {
        self.server = None;
        self.by_conn.clear();
        if let Some(external) = self.external.as_mut() {
            external.clear();
        }
        for client in self.clients.values_mut() {
            if client.conn.take().is_some() {
                client.closed_by_server = true;
            }
        }
    }

    /// A graceful stop begins: the server says goodbye to its clients and
    /// closes them; what it asks of the bus meanwhile is still carried out
    /// ([`Self::kill`] then ends the process).
    pub(crate) fn shut_down(&mut self, reason: &str) -> Result<(), DriverError> {
        let now = self.now;
        self.server()?.handle_shutdown(now, reason);
        self.drain()
    }

    /// Starts the server again on what it persisted (after [`Self::kill`]).
    pub(crate) fn revive(&mut self) -> Result<(), DriverError> {
        let mut records = Vec::new();
        for bytes in self.logs.values() {
            records.extend(history::recover(bytes).records);
        }
        self.boot(records)
    }

    /// Forgets a client whose connection is over (it reconnects elsewhere).
    pub(crate) fn forget(&mut self, client: &str) {
        if self.clients.get(client).is_some_and(|c| c.conn.is_none()) {
            self.clients.remove(client);
        }
    }

    /// The records persisted so far, per room, as log bytes.
    pub fn logs(&self) -> &BTreeMap<RoomName, Vec<u8>> {
        &self.logs
    }

    /// The server's invariants (`Server::check_invariants`); nothing to
    /// check while it is stopped.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        self.server
            .as_ref()
            .map_or(Ok(()), Server::check_invariants)
    }

    fn server(&mut self) -> Result<&mut Server, DriverError> {
        self.server
            .as_mut()
            .ok_or_else(|| DriverError("the server is not running".into()))
    }

    fn unix_now(&self) -> u64 {
        let elapsed = self.now.duration_since(self.epoch).as_millis();
        VIRTUAL_UNIX_START_MS + u64::try_from(elapsed).unwrap_or(u64::MAX / 2)
    }

    fn boot(&mut self, records: Vec<Record>) -> Result<(), DriverError> {
        let mut server = Server::new(self.config.clone(), self.now, self.unix_now())
            .map_err(|error| DriverError(format!("config: {error}")))?;
        server.restore(records);
        server.load_accounts(self.accounts.values().cloned().collect());
        self.server = Some(server);
        Ok(())
    }

    /// Does everything the server asked, the way a backend would.
    fn drain(&mut self) -> Result<(), DriverError> {
        let now = self.now;
        loop {
            let output = match self.server()?.poll_output() {
                Some(output) => output,
                None => break,
            };
            match output {
                Output::Send { to, bytes, .. } => self.deliver(to, &bytes),
                Output::Broadcast {
                    to, except, bytes, ..
                } => {
                    for &conn in to.iter().filter(|&&c| Some(c) != except) {
                        self.deliver(conn, &bytes);
                    }
                }
                Output::Close { conn, .. } => {
                    if let Some(name) = self.by_conn.remove(&conn)
                        && let Some(client) = self.clients.get_mut(&name)
                    {
                        client.closed_by_server = true;
                        client.conn = None;
                    }
                }
                Output::Persist(record) => {
                    self.logs
                        .entry(record.room.clone())
                        .or_default()
                        .extend_from_slice(&history::encode(&record));
                    self.server()?.handle_persisted(now, record.id);
                }
                Output::VerifyPassword(check) => {
                    // Synchronously, with the engine's verifier: the verdict
                    // arrives before any later input, as the transcript's
                    // order demands.
                    let verdict = chatd_engine::auth::verify(&check.hash, &check.password);
                    self.server()?
                        .handle_password_verdict(now, check.request, verdict);
                }
                Output::HashPassword(request) => {
                    let hash = self.hash(request.password.expose());
                    self.server()?
                        .handle_password_hashed(now, request.request, hash);
                }
                Output::StoreAccount(write) => {
                    match &write.change {
                        AccountChange::Put(account) => {
                            let key = account.name.folded().to_string();
                            self.accounts.insert(key, account.clone());
                        }
                        AccountChange::Remove { name } => {
                            self.accounts.remove(&name.folded().to_string());
                        }
                    }
                    self.server()?
                        .handle_account_stored(now, write.request, true);
                }
                Output::Bus(request) => match self.external.as_mut() {
                    Some(external) => external.push_back(External::Bus(*request)),
                    None => {
                        return Err(DriverError(format!("unexpected bus request {request:?}")));
                    }
                },
                Output::QueryHistory(query) if self.external.is_some() => {
                    // A node's history is the cluster's: the bus answers.
                    if let Some(external) = self.external.as_mut() {
                        external.push_back(External::Query(*query));
                    }
                }
                Output::QueryHistory(query) => {
                    // Synchronously too: every stored record (whispers
                    // included) recovered from the logs' bytes, as the
                    // engine's reader reads its files.
                    let answer = self.answer(&query);
                    self.server()?.handle_history_answer(now, answer);
                }
            }
        }
        Ok(())
    }

    /// Argon2id at m=1024,t=1,p=1 (the transcripts' operator hash has the
    /// same), salted with a counter.
    fn hash(&mut self, password: &str) -> Option<String> {
        use argon2::password_hash::{PasswordHasher, SaltString};
        self.salts += 1;
        let salt =
            SaltString::encode_b64(format!("chatd-salt-{:08}", self.salts).as_bytes()).ok()?;
        let params = argon2::Params::new(1024, 1, 1, None).ok()?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        argon
            .hash_password(password.as_bytes(), &salt)
            .ok()
            .map(|hash| hash.to_string())
    }

    /// Answers a history query from the byte logs.
    fn answer(&self, query: &HistoryQuery) -> HistoryAnswer {
        let mut collector = query.collector();
        for bytes in self.logs.values() {
            for record in history::recover(bytes).records {
                if query.admits(&record) {
                    collector.offer(Arc::new(record));
                }
            }
        }
        HistoryAnswer {
            request: query.request,
            records: collector.finish(),
            shortfall: None,
        }
    }

    fn deliver(&mut self, conn: ConnId, bytes: &[u8]) {
        if let Some(name) = self.by_conn.get(&conn)
            && let Some(client) = self.clients.get_mut(name)
        {
            client.inbox.extend_from_slice(bytes);
        }
    }

    fn conn_of(&self, client: &str) -> Result<ConnId, DriverError> {
        self.clients
            .get(client)
            .and_then(|c| c.conn)
            .ok_or_else(|| DriverError(format!("{client} is not connected")))
    }

    /// Cuts `bytes` at up to three random points (sometimes one byte at a time).
    fn chunks(&mut self, bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
        let len = bytes.len();
        if len <= 1 {
            return std::iter::once(0..len).collect();
        }
        if self.rng.next().is_multiple_of(8) {
            return (0..len).map(|i| i..i + 1).collect();
        }
        let cuts = self.rng.next() % 4;
        let mut points: Vec<usize> = (0..cuts)
            .map(|_| 1 + (self.rng.next() as usize) % (len - 1))
            .collect();
        points.push(0);
        points.push(len);
        points.sort_unstable();
        points.dedup();
        points.windows(2).map(|w| w[0]..w[1]).collect()
    }
}

impl Driver for MemoryDriver {
    fn name(&self) -> &str {
        "memory"
    }

    fn start(&mut self, config: &Config) -> Result<(), DriverError> {
        self.config = config.clone();
        self.logs.clear();
        self.accounts.clear();
        self.boot(Vec::new())
    }

    fn connect(&mut self, client: &str, from: IpAddr, dialect: Dialect) -> Result<(), DriverError> {
        if self.clients.get(client).is_some_and(|c| c.conn.is_some()) {
            return Err(DriverError(format!("{client} is already connected")));
        }
        let peer = SocketAddr::new(from, self.next_port);
        self.next_port = self.next_port.wrapping_add(1).max(40_000);
        let now = self.now;
        let mut state = Client::default();
        match self.server()?.accept_as(now, peer, dialect) {
            Ok(conn) => {
                state.conn = Some(conn);
                self.by_conn.insert(conn, client.to_owned());
            }
            Err(refused) => {
                state.inbox.extend_from_slice(&refused.line);
                state.closed_by_server = true;
            }
        }
        self.clients.insert(client.to_owned(), state);
        self.drain()
    }

    fn send(&mut self, client: &str, bytes: &[u8]) -> Result<(), DriverError> {
        let conn = self.conn_of(client)?;
        let now = self.now;
        for range in self.chunks(bytes) {
            self.server()?.handle(now, conn, &bytes[range]);
            self.drain()?;
        }
        Ok(())
    }

    fn next_line(&mut self, client: &str) -> Result<Received, DriverError> {
        let state = self
            .clients
            .get_mut(client)
            .ok_or_else(|| DriverError(format!("{client} never connected")))?;
        if let Some(end) = state.inbox.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = state.inbox.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]).into_owned();
            return Ok(Received::Line(text));
        }
        if state.closed_by_server {
            return Ok(Received::Closed);
        }
        Ok(Received::Nothing)
    }

    fn close(&mut self, client: &str) -> Result<(), DriverError> {
        let conn = self.conn_of(client)?;
        let now = self.now;
        self.by_conn.remove(&conn);
        self.clients.remove(client);
        self.server()?.handle_closed(now, conn);
        self.drain()
    }

    fn advance(&mut self, by: Duration) -> Result<(), DriverError> {
        self.server()?;
        self.advance_to(self.now + by)
    }

    fn restart(&mut self) -> Result<(), DriverError> {
        let now = self.now;
        self.server()?.handle_shutdown(now, RESTART_REASON);
        self.drain()?;
        self.server = None;
        self.revive()
    }

    fn stop(&mut self) {
        self.server = None;
        self.clients.clear();
        self.by_conn.clear();
    }
}

/// A tiny deterministic generator for chunk points (SplitMix64).
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
