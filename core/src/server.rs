//! The chat server state machine.

mod accounts;
mod chat;
mod cluster;
mod dispatch;
mod histories;
mod invariants;
mod irc;

mod liveness;
mod login;
mod moderation;
mod nick_index;
mod outbox;
mod presence;
mod queries;
mod remote;
mod room;
mod room_settings;
mod rooms;
mod session;

#[cfg(feature = "fuzzing")]
pub use invariants::RoomView;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use ahash::AHashMap;

use crate::address::AddressGroup;
use crate::config::{Config, ConfigError};
use crate::counters::{Counters, Gauges, Listener, Protocol};
use crate::dialect::{Arrival, Dialect};
use crate::error::ErrorCode;
use crate::history::{IdFloor, MessageIds, Record};
use crate::ids::{ConnId, MessageId, Nick, RoomName};
use crate::io::{CloseReason, Output, Priority, Refused};
use crate::irc::caps::Caps;
use crate::line::LineBuffer;
use crate::login::Logins;
use crate::rate_limit::SlidingWindow;
use crate::render::{self, Style, Viewer};
use crate::reply::{Person, Reply};
use crate::timers::{Timer, Timers};
use crate::wall_clock::WallClock;

use self::histories::{Histories, HistoryBounds};
use self::nick_index::NickIndex;
use self::outbox::Outbox;
use self::presence::Entry;
use self::room::{Ban, Room};
use self::session::Session;

/// The whole chat server as a pure state machine.
///
/// It never reads a clock, sleeps, spawns, locks or does I/O: time comes in
/// with every input, and everything it wants done comes out of
/// [`Server::poll_output`]. A driver (backend or test) runs this loop:
///
/// 1. Feed one input: [`Server::accept`] a connection (on refusal, send
///    [`Refused::line`] and close), [`Server::handle`] bytes read from a
///    connection, [`Server::handle_closed`] when a peer hung up,
///    [`Server::handle_persisted`] / [`Server::handle_persist_failed`] when
///    the history writer finished a record, [`Server::handle_password_verdict`]
///    when a password check is done, [`Server::handle_history_answer`] when
///    a history query is answered, or [`Server::handle_timeout`]
///    once the deadline from step 3 has passed.
/// 2. Drain [`Server::poll_output`] until it returns `None`, doing each
///    output in order: send or broadcast bytes, close after flushing, append
///    a record to the room's log, verify a password off this thread (its
///    verdict comes back through [`Server::handle_password_verdict`]),
///    read the stored history for a query (its answer comes back through
///    [`Server::handle_history_answer`]).
/// 3. Ask [`Server::poll_timeout`] for the next deadline and wait for input
///    until then.
///
/// ```
/// use std::time::{Duration, Instant};
/// use chatd_core::{Config, Output, Server};
///
/// let start = Instant::now();
/// let mut server = Server::new(Config::default(), start, 1_795_000_000_000).unwrap();
/// let alice = server.accept(start, "127.0.0.1:40000".parse().unwrap()).unwrap();
/// server.handle(start, alice, b"#nick alice\n");
///
/// let mut lines = Vec::new();
/// while let Some(output) = server.poll_output() {
///     if let Output::Send { to, bytes, .. } = output {
///         assert_eq!(to, alice);
///         lines.push(String::from_utf8(bytes.to_vec()).unwrap());
///     }
/// }
/// assert_eq!(lines, [
///     "* welcome, you are guest1 in #general; type #help for commands\n",
///     "* you are now alice\n",
/// ]);
/// // Nothing to do until the idle check is due.
/// assert_eq!(server.poll_timeout(), Some(start + Duration::from_secs(300)));
/// ```
#[derive(Debug)]
pub struct Server {
    config: Config,
    wall: WallClock,
    next_conn: u64,
    /// Message ids, reserved on disk ahead of use (history.rs).
    ids: MessageIds,
    /// Boxed: with ids only growing, B-tree nodes run about half full, and
    /// a half-empty node of pointers wastes far less than one of sessions.
    sessions: BTreeMap<ConnId, Box<Session>>,
    /// Folded nickname to connection.
    nicks: NickIndex,
    rooms: BTreeMap<RoomName, Room>,
    /// Recent lines of every room, within `history_size` per room and
    /// `history_bytes` in all.
    histories: Histories,
    /// Per-address state, by address group (IPv6 by network).
    addresses: AHashMap<AddressGroup, Address>,
    server_bans: BTreeMap<IpAddr, Ban>,
    /// Messages whose sender waits for an acknowledgement.
    pending_acks: AHashMap<MessageId, ConnId>,
    /// `#oper` and account verifications in flight and failed-login
    /// throttling.
    logins: Logins,
    /// Registered accounts, and their hashes and stores in flight.
    accounts: crate::accounts::Accounts,
    timers: Timers,
    out: Outbox,
    shutting_down: bool,
    /// HTTP connections admitted but not (yet) upgraded to a WebSocket.
    web_pending: AHashMap<ConnId, WebPending>,
    /// The most recent departures, newest last, for IRC's WHOWAS.
    departed: std::collections::VecDeque<Departed>,
    /// IRC batches opened so far, for batch ids unique on a connection.
    batches: u64,
    /// `#history` and `#search` requests at the driver or waiting.
    queries: queries::Queries,
    /// What happened so far, for metrics.
    counters: Counters,
    /// This server's state as a node of a cluster, if it is one. Boxed:
    /// a single server pays one pointer.
    cluster: Option<Box<self::cluster::ClusterState>>,
}

/// An HTTP connection admitted by [`Server::accept_web`], not yet a session.
#[derive(Debug, Clone, Copy)]
struct WebPending {
    peer: SocketAddr,
    encrypted: bool,
}

/// Who left, as WHOWAS shows it.
#[derive(Debug)]
struct Departed {
    nick: Nick,
    user: Box<str>,
    host: IpAddr,
    realname: Box<str>,
}

/// How long an IRC client has to register when idle checks are off
/// (with them on, it has until the first idle check).
const REGISTRATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// How many departures WHOWAS remembers.
const WHOWAS_KEPT: usize = 100;

/// How a departing connection's room learns of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Farewell<'a> {
    /// Not at all (a kick already said it).
    Silent,
    /// "* nick quit[: message]".
    Quit(Option<&'a str>),
}

/// Per-address state shared by all connections from one address group;
/// kept while it has connections or rooms created that still exist.
#[derive(Debug, Default)]
struct Address {
    connections: usize,
    admitted: SlidingWindow,
    rooms_created: usize,
}

impl Server {
    /// Builds a server; `unix_ms` is the wall-clock time at `now`
    /// (milliseconds since the Unix epoch), used to timestamp history.
    pub fn new(config: Config, now: Instant, unix_ms: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        let config_server_name = config.irc.server_name.clone();
        // Unknown operator names cost what the first operator's hash costs.
        let logins = Logins::new(config.operators.first().map(|o| o.password_hash.as_str()));
        let mut rooms = BTreeMap::new();
        rooms.insert(RoomName::general(), Room::new(None, false));
        let mut out = Outbox::new(&config_server_name);
        let cluster = config
            .cluster
            .as_ref()
            .map(|c| Box::new(self::cluster::ClusterState::start(c, &mut out)));
        let mut histories = Histories::default();
        if cluster.is_some() {
            // A room's stream holds what was said before this node
            // started: beyond memory, `#history` asks the driver.
            histories.mark_all_incomplete();
        }
        Ok(Self {
            config,
            wall: WallClock::new(now, unix_ms),
            next_conn: 1,
            ids: MessageIds::new(1),
            sessions: BTreeMap::new(),
            nicks: NickIndex::default(),
            rooms,
            histories,
            addresses: AHashMap::new(),
            server_bans: BTreeMap::new(),
            pending_acks: AHashMap::new(),
            logins,
            accounts: crate::accounts::Accounts::new(),
            timers: Timers::default(),
            out,
            shutting_down: false,
            web_pending: AHashMap::default(),
            departed: std::collections::VecDeque::new(),
            batches: 0,
            queries: queries::Queries::default(),
            counters: Counters::default(),
            cluster,
        })
    }

    /// Rebuilds rooms' recent history from stored records (call before
    /// accepting connections). Records of private rooms, whispers and id
    /// reservations are skipped; message ids continue above every id the
    /// records show as used ([`IdFloor`]; give records in the order
    /// written). Memory stays within the history bounds however many
    /// records come in: the bounds are enforced as they go, keeping the
    /// most recent rooms. A room whose records were all given (from its
    /// first) answers `#history` from memory; give the driver's list of
    /// rooms with older records not given to
    /// [`Server::mark_history_incomplete`] afterwards.
    pub fn restore(&mut self, records: impl IntoIterator<Item = Record>) {
        let capacity = self.config.history_size;
        let mut floor = IdFloor::default();
        for record in records {
            floor.observe(&record);
            if record.is_restorable() {
                self.histories.push(Arc::new(record), capacity);
                self.enforce_history_bounds();
            }
        }
        self.ids = MessageIds::new(floor.next().max(self.ids.peek_next()));
    }

    /// The key per-address limits count `address` under.
    fn address_group(&self, address: IpAddr) -> AddressGroup {
        AddressGroup::of(address, self.config.limits.ipv6_prefix)
    }

    /// Trims in-memory history to its bounds (a no-op while within them).
    fn enforce_history_bounds(&mut self) {
        let bounds = HistoryBounds {
            total_bytes: self.config.history_bytes,
            rooms: self.config.max_rooms,
        };
        let rooms = &self.rooms;
        self.histories
            .enforce(bounds, |name| rooms.contains_key(name));
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Indexes `conn`'s nickname `nick` (its session holds it already).
    fn index_nick(&mut self, conn: ConnId, nick: &Nick) {
        let sessions = &self.sessions;
        self.nicks.insert(&nick.folded(), conn, |held| {
            sessions.get(&held).map(|session| session.nick.folded())
        });
    }

    /// The connection holding a nickname (case ignored), registered or
    /// not: for uniqueness.
    fn conn_named(&self, nick: &Nick) -> Option<ConnId> {
        let sessions = &self.sessions;
        self.nicks.holder(&nick.folded(), |conn| {
            sessions.get(&conn).map(|session| session.nick.folded())
        })
    }

    /// The user of a nickname (case ignored): a connection others can
    /// reach, which an IRC client becomes only once registered.
    fn user_named(&self, nick: &Nick) -> Option<ConnId> {
        self.conn_named(nick)
            .filter(|conn| self.sessions.get(conn).is_some_and(|s| s.is_registered()))
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.sessions.len()
    }

    /// What the server has counted since it started (for metrics).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// What the server holds now (for metrics). Walks every connection:
    /// cheap enough once per scrape, and keeping these per event would
    /// cost every connect and disconnect instead.
    pub fn gauges(&self) -> Gauges {
        let mut gauges = Gauges::default();
        gauges.rooms = self.rooms.len() as u64;
        gauges.history_bytes = self.histories.bytes() as u64;
        gauges.cluster = self.cluster_gauges();
        for session in self.sessions.values() {
            let listener = Listener::of(Arrival {
                dialect: session.dialect,
                encrypted: session.encrypted,
                web: session.web,
            });
            gauges.add_connection(listener, Protocol::of(session.dialect));
        }
        for pending in self.web_pending.values() {
            gauges.add_connection(Listener::web(pending.encrypted), Protocol::Http);
        }
        gauges
    }

    /// Re-anchors wall-clock time (`unix_ms` at `now`), e.g. after the
    /// system clock was corrected.
    pub fn handle_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.wall = WallClock::new(now, unix_ms);
    }

    /// Decides whether to admit a new native-dialect connection from
    /// `peer`: [`Server::accept_as`] with [`Dialect::Native`].
    pub fn accept(&mut self, now: Instant, peer: SocketAddr) -> Result<ConnId, Refused> {
        self.accept_as(now, peer, Dialect::Native)
    }

    /// Decides whether to admit a new connection from `peer` that speaks
    /// `dialect` (the listener's).
    ///
    /// Admitted connections get a guest nickname, join #general and receive
    /// a welcome line. Refused ones get no id; the driver sends
    /// [`Refused::line`] and closes.
    pub fn accept_as(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        dialect: Dialect,
    ) -> Result<ConnId, Refused> {
        self.accept_via(
            now,
            peer,
            Arrival {
                dialect,
                encrypted: false,
                web: false,
            },
        )
    }

    /// Decides whether to admit a new connection from `peer` that came in
    /// as `arrival` says (the listener's dialect, and whether its
    /// transport is encrypted, e.g. TLS). Otherwise as
    /// [`Server::accept_as`].
    pub fn accept_via(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        arrival: Arrival,
    ) -> Result<ConnId, Refused> {
        let (conn, peer) = self.admit(now, peer, arrival.dialect, Listener::of(arrival))?;
        self.open_session(now, conn, peer, arrival);
        Ok(conn)
    }

    /// Admits a connection to the HTTP listener from `peer`: it counts
    /// against the same limits as any connection (`max_connections`, per
    /// address, bans) from now on, but is no session yet: the engine
    /// answers its HTTP request itself. When the request upgrades to a
    /// WebSocket, [`Server::handle_upgraded`] makes it a session of the
    /// route's dialect; otherwise [`Server::handle_closed`] forgets it. The
    /// refusal line is native; the engine wraps it in an HTTP answer.
    pub fn accept_web(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        encrypted: bool,
    ) -> Result<ConnId, Refused> {
        let (conn, peer) = self.admit(now, peer, Dialect::Native, Listener::web(encrypted))?;
        self.web_pending
            .insert(conn, WebPending { peer, encrypted });
        Ok(conn)
    }

    /// A connection from [`Server::accept_web`] upgraded to a WebSocket
    /// that speaks `dialect`: from now on it is a session like one from a
    /// listener of that dialect (welcome, #general, limits).
    pub fn handle_upgraded(&mut self, now: Instant, conn: ConnId, dialect: Dialect) {
        let Some(pending) = self.web_pending.remove(&conn) else {
            return;
        };
        let arrival = Arrival {
            dialect,
            encrypted: pending.encrypted,
            web: true,
        };
        self.open_session(now, conn, pending.peer, arrival);
    }

    /// Admits a connection from `peer` on `listener` (refusals rendered in
    /// `dialect`): a new id, counted against its address's limit, and the
    /// peer as bans and limits see it.
    fn admit(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        dialect: Dialect,
        listener: Listener,
    ) -> Result<(ConnId, SocketAddr), Refused> {
        // Bans and limits see an IPv4 client the same however it came in.
        let peer = SocketAddr::new(crate::address::canonical(peer.ip()), peer.port());
        if let Err(refused) = self.check_admission(now, peer.ip(), dialect) {
            self.counters.refuse(refused.code);
            return Err(refused);
        }
        self.counters.accept(listener);
        let conn = ConnId::new(self.next_conn);
        self.next_conn += 1;
        let group = self.address_group(peer.ip());
        self.addresses.entry(group).or_default().connections += 1;
        Ok((conn, peer))
    }

    /// Frees the address slot of a connection admitted by [`Server::admit`].
    fn release_address(&mut self, address: IpAddr) {
        let group = self.address_group(address);
        if let Some(state) = self.addresses.get_mut(&group) {
            state.connections -= 1;
            if state.connections == 0 && state.rooms_created == 0 {
                self.addresses.remove(&group);
            }
        }
    }

    /// Makes the session of an admitted connection: guest nickname,
    /// timers, and for a native one the welcome and #general.
    fn open_session(&mut self, now: Instant, conn: ConnId, peer: SocketAddr, arrival: Arrival) {
        let dialect = arrival.dialect;
        let nick = self.guest_nick(conn);
        self.claim_guest(conn, nick);
        let mut session = Session::new(peer, dialect, nick, now);
        session.encrypted = arrival.encrypted;
        session.web = arrival.web;
        if dialect == Dialect::Irc {
            session.line = LineBuffer::irc();
            if let Some(irc) = session.irc.as_mut() {
                irc.pass_ok = self.config.irc.password.is_none();
            }
        }
        if dialect == Dialect::Irc {
            self.out.set_viewer(
                conn,
                Viewer {
                    style: Style::of(dialect),
                    nick,
                    registering: true,
                    caps: Caps::default(),
                },
            );
        }
        self.sessions.insert(conn, Box::new(session));
        self.index_nick(conn, &nick);
        if self.config.idle.enabled {
            self.arm_idle(conn, now + self.config.idle.ping_after);
        } else if dialect == Dialect::Irc {
            // Without idle checks an IRC client still has a deadline to
            // register by (liveness.rs).
            self.arm_idle(conn, now + REGISTRATION_TIMEOUT);
        }
        self.out.scene.unix_ms = self.wall.unix_ms(now);
        if dialect == Dialect::Native {
            let general = RoomName::general();
            self.out.send(
                conn,
                &Reply::Welcome {
                    nick: &nick,
                    room: &general,
                },
            );
            self.enter_room(conn, &general, Entry::Welcomed);
        }
    }

    /// Bytes read from a connection, split at any point.
    pub fn handle(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.counters.bytes_in += bytes.len() as u64;
        self.out.scene.unix_ms = self.wall.unix_ms(now);
        self.handle_bytes(now, conn, bytes);
    }

    /// The peer closed the connection (or the socket failed).
    pub fn handle_closed(&mut self, _now: Instant, conn: ConnId) {
        if let Some(pending) = self.web_pending.remove(&conn) {
            self.release_address(pending.peer.ip());
        } else if self.sessions.contains_key(&conn) {
            self.remove_session(conn, Farewell::Quit(Some("connection closed")));
        }
    }

    /// The peer ended its input cleanly (it half-closed, or hung up): as
    /// if it quit, and the connection is closed once what was said to it
    /// before is written. So a client that sends its last lines and then
    /// half-closes to wait for the answers gets them.
    pub fn handle_input_ended(&mut self, now: Instant, conn: ConnId) {
        self.handle_closed(now, conn);
        self.out.close(conn, CloseReason::Quit);
    }

    /// The driver could not deliver to this connection fast enough (its
    /// outbound queue passed [`Config::max_outbound_bytes`]): it is closed.
    pub fn handle_slow_consumer(&mut self, _now: Instant, conn: ConnId) {
        if let Some(pending) = self.web_pending.remove(&conn) {
            self.counters.slow_consumers += 1;
            self.release_address(pending.peer.ip());
        } else if self.sessions.contains_key(&conn) {
            self.counters.slow_consumers += 1;
            self.remove_session(conn, Farewell::Quit(Some("too slow to receive")));
            self.out.close(conn, CloseReason::SlowConsumer);
        }
    }

    /// A record from [`Output::Persist`] is durable: acknowledge it if its
    /// sender asked for acknowledgements.
    pub fn handle_persisted(&mut self, _now: Instant, id: MessageId) {
        if let Some(released) = self.ids.confirm(id) {
            return self.release_acks(released);
        }
        if let Some(conn) = self.pending_acks.remove(&id)
            && self.sessions.contains_key(&conn)
        {
            self.out.send(conn, &Reply::Ack(id));
        }
    }

    /// A record from [`Output::Persist`] could not be stored: tell its
    /// sender if they wait for an acknowledgement (they never get one).
    pub fn handle_persist_failed(&mut self, _now: Instant, id: MessageId) {
        if let Some(released) = self.ids.fail(id) {
            return self.release_acks(released);
        }
        if let Some(conn) = self.pending_acks.remove(&id) {
            self.not_stored(conn, id);
        }
    }

    /// ACKs of unwritten whispers decided by a reservation's fate.
    fn release_acks(&mut self, released: crate::history::Released) {
        for (id, conn) in released.acked {
            if self.sessions.contains_key(&conn) {
                self.out.send(conn, &Reply::Ack(id));
            }
        }
        for (id, conn) in released.failed {
            self.not_stored(conn, id);
        }
    }

    fn not_stored(&mut self, conn: ConnId, id: MessageId) {
        if self.sessions.contains_key(&conn) {
            let text = format!("message {id} was delivered but could not be stored");
            self.out.error(conn, ErrorCode::NotStored, &text);
        }
    }

    /// Time has reached a deadline from [`Server::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.out.scene.unix_ms = self.wall.unix_ms(now);
        while let Some((at, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Idle(conn) => self.check_idle(now, conn),
                Timer::Fakelag(conn) => self.release_held(now, conn),
                Timer::MuteExpiry { room, conn } => self.expire_mute(at, &room, conn),
                Timer::RoomBanExpiry { room, address } => self.expire_room_ban(at, &room, address),
                Timer::ServerBanExpiry(address) => self.expire_server_ban(at, address),
                Timer::NickGrace(conn) => self.end_grace(at, conn),
                Timer::AccountMuteExpiry { room, account } => {
                    self.expire_account_mute(at, &room, account)
                }
            }
        }
    }

    /// The server is stopping: every client is told why and closed, and no
    /// new connection is admitted. Records already emitted are the driver's
    /// to flush.
    pub fn handle_shutdown(&mut self, now: Instant, reason: &str) {
        self.shutting_down = true;
        if let Some(last) = self.ids.last_used() {
            // The exact last id, so ids continue without a jump after a
            // clean restart (history.rs, `IdFloor`).
            let mark = Record::reservation(last, self.wall.unix_ms(now));
            self.out.push(Output::Persist(Arc::new(mark)));
        }
        self.out.scene.unix_ms = self.wall.unix_ms(now);
        let conns: Vec<ConnId> = self.sessions.keys().copied().collect();
        for conn in conns {
            self.out
                .send_with(conn, &Reply::ShuttingDown { reason }, Priority::Urgent);
            self.out.close(conn, CloseReason::Shutdown);
            self.out.forget_viewer(conn);
        }
        self.sessions.clear();
        self.queries.clear();
        self.nicks.clear();
        self.addresses.clear();
        self.pending_acks.clear();
        self.rooms.retain(|name, _| *name == RoomName::general());
        self.rooms
            .insert(RoomName::general(), Room::new(None, false));
        // Of all timers only server bans' outlive this: the sessions, mutes
        // and room bans they timed are gone.
        self.timers = Timers::default();
        for (&address, ban) in &self.server_bans {
            if let Some(until) = ban.until {
                self.timers.schedule(until, Timer::ServerBanExpiry(address));
            }
        }
    }

    /// The next thing the driver must do, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        // Counted here, where every output leaves, after labeled answers
        // were merged (outbox.rs): what the driver is asked to deliver.
        let output = self.out.pop()?;
        self.counters.output(&output);
        Some(output)
    }

    /// When [`Server::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    fn check_admission(
        &self,
        now: Instant,
        address: IpAddr,
        dialect: Dialect,
    ) -> Result<(), Refused> {
        let refuse = |code, text: String| {
            let reply = Reply::Error {
                code,
                subject: None,
                text: &text,
            };
            Err(Refused {
                code,
                peer: address,
                line: render::encode(Style::of(dialect), &reply, None, &self.out.scene),
            })
        };
        if self.shutting_down {
            return refuse(ErrorCode::ServerFull, "the server is shutting down".into());
        }
        if let Some(ban) = self
            .server_bans
            .get(&address)
            .filter(|ban| ban.is_active(now))
        {
            return refuse(ErrorCode::Banned, describe_ban("this server", ban, now));
        }
        if self.sessions.len() + self.web_pending.len() >= self.config.max_connections {
            return refuse(
                ErrorCode::ServerFull,
                format!(
                    "the server is full ({} connections); try again later",
                    self.config.max_connections
                ),
            );
        }
        let limit = self.config.max_connections_per_ip;
        let group = self.address_group(address);
        let open = self.addresses.get(&group).map_or(0, |a| a.connections);
        if limit > 0 && open >= limit {
            return refuse(
                ErrorCode::TooManyConnections,
                format!("too many connections from {group} (limit {limit})"),
            );
        }
        Ok(())
    }

    /// Forgets a connection: leaves its rooms (announcing the farewell
    /// there), frees its nickname and address slot. Does not emit
    /// [`Output::Close`]; callers do when the driver has not closed it yet.
    fn remove_session(&mut self, conn: ConnId, farewell: Farewell<'_>) {
        let Some(session) = self.sessions.remove(&conn) else {
            return;
        };
        self.out.forget_viewer(conn);
        self.queries.forget(conn);
        self.nicks.remove(&session.nick.folded(), conn);
        if let Some(irc) = session.irc.as_ref().filter(|irc| irc.registered)
            && let Some(names) = &irc.user
        {
            if self.departed.len() == WHOWAS_KEPT {
                self.departed.pop_front();
            }
            self.departed.push_back(Departed {
                nick: session.nick,
                user: names.user().into(),
                host: session.peer,
                realname: names.realname().into(),
            });
        }
        self.release_address(session.peer);
        for invited in &session.standing().invited_to {
            if let Some(room) = self.rooms.get_mut(invited) {
                room.invites.remove(&conn);
            }
        }
        if let Some(at) = session.idle_at {
            self.timers.cancel(at, &Timer::Idle(conn));
        }
        if let Some(held) = &session.held {
            self.timers.cancel(held.at, &Timer::Fakelag(conn));
        }
        if let Some(at) = session.standing().grace_at {
            self.timers.cancel(at, &Timer::NickGrace(conn));
        }
        for muted in &session.standing().muted_in {
            if let Some(until) = self
                .rooms
                .get_mut(muted)
                .and_then(|room| room.mutes.remove(&conn))
            {
                let timer = Timer::MuteExpiry {
                    room: muted.clone(),
                    conn,
                };
                self.timers.cancel(until, &timer);
            }
        }
        for name in &session.rooms {
            if let Some(room) = self.rooms.get_mut(name) {
                room.remove_member(conn);
            }
        }
        let message = match farewell {
            Farewell::Quit(message) => {
                self.announce_quit(&session.rooms, session.person(), message);
                message
            }
            Farewell::Silent => None,
        };
        self.cluster_quit(conn, &session, message);
        for name in &session.rooms {
            self.after_departure(name, conn, session.nick);
        }
    }

    /// "* nick quit[: message]" to the rooms a user has just left, each
    /// member told once, in rooms small enough for presence notices.
    fn announce_quit(&mut self, rooms: &[RoomName], who: Person<'_>, message: Option<&str>) {
        let limit = self.config.presence_announce_limit;
        let reply = Reply::Quit { who, message };
        if let [only] = rooms {
            if let Some(room) = self.rooms.get_mut(only)
                && room.len() < limit
            {
                self.out
                    .broadcast(&room.audiences(), None, &reply, Priority::Normal);
            }
            return;
        }
        let mut peers = std::collections::BTreeSet::new();
        for name in rooms {
            if let Some(room) = self.rooms.get(name)
                && room.len() < limit
            {
                peers.extend(room.members());
            }
        }
        self.out.broadcast_to(peers, None, &reply, Priority::Normal);
    }
}

/// "you are banned from X: reason (for another 4m59s)".
fn describe_ban(place: &str, ban: &Ban, now: Instant) -> String {
    let mut text = format!("you are banned from {place}");
    if let Some(reason) = &ban.reason {
        text.push_str(": ");
        text.push_str(reason);
    }
    if let Some(until) = ban.until {
        text.push_str(&format!(
            " (for another {})",
            crate::duration::format(until.saturating_duration_since(now))
        ));
    }
    text
}
