//! What the core asks its driver to do.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::accounts::{AccountWrite, HashRequest};
use crate::cluster::BusRequest;
use crate::error::ErrorCode;
use crate::history::Record;
use crate::history_query::HistoryQuery;
use crate::ids::ConnId;
use crate::login::PasswordCheck;

/// How urgently bytes should go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Ordinary traffic, delivered in order.
    Normal,
    /// Overtakes queued normal traffic for the connection (`#urgent`, and
    /// moderation notices to their target). Never splits a line: it goes in
    /// before the first queued line not yet started.
    Urgent,
}

/// One thing the driver must do, drained with [`crate::Server::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send bytes (one or more complete lines) to one connection.
    Send {
        /// The connection.
        to: ConnId,
        /// Complete lines, each ending in LF.
        bytes: Bytes,
        /// Queue position.
        priority: Priority,
    },
    /// Send the same bytes to many connections. The bytes were encoded once;
    /// the recipient list is shared (usually a room's cached member list).
    Broadcast {
        /// Recipients in increasing id order.
        to: Arc<[ConnId]>,
        /// A recipient to skip (the sender of a chat line).
        except: Option<ConnId>,
        /// Complete lines, each ending in LF.
        bytes: Bytes,
        /// Queue position.
        priority: Priority,
    },
    /// Flush what is queued for the connection, then close it. The core has
    /// already forgotten it: later input for it is ignored.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why, for the driver's log.
        reason: CloseReason,
    },
    /// Append a record to its room's log. When the record is durable (under
    /// the fsync policy), call [`crate::Server::handle_persisted`]; when
    /// it cannot be stored, [`crate::Server::handle_persist_failed`].
    Persist(Arc<Record>),
    /// Check an operator password (Argon2, slow by design) off the core's
    /// thread, then call [`crate::Server::handle_password_verdict`] with
    /// its request. Boxed: rare, and much larger than the other outputs.
    VerifyPassword(Box<PasswordCheck>),
    /// Read the stored history for a query the core's memory cannot
    /// answer alone (`#history` beyond its recent lines, `#search`): offer
    /// every stored record the query [admits](HistoryQuery::admits) to its
    /// [collector](HistoryQuery::collector), off the core's thread, then
    /// call [`crate::Server::handle_history_answer`] with the answer. An
    /// answer must come back for every query (empty when nothing is
    /// stored). Boxed: rare, and larger than the other outputs.
    QueryHistory(Box<HistoryQuery>),
    /// Hash a new account password (Argon2id, slow by design) off the
    /// core's thread, then call [`crate::Server::handle_password_hashed`]
    /// with its request and the PHC string (`None` if it could not be
    /// hashed). Boxed: rare.
    HashPassword(Box<HashRequest>),
    /// Make an account change durable, then call
    /// [`crate::Server::handle_account_stored`] with its request and
    /// whether it is stored. Changes must be applied in the order given.
    /// Boxed: rare.
    StoreAccount(Box<AccountWrite>),
    /// Hand a request to the cluster bus (only when the server is a node
    /// of a cluster). Answers, and what other nodes say, come back through
    /// [`crate::Server::handle_bus`]. Boxed: larger than the other outputs.
    Bus(Box<BusRequest>),
}

/// Why the core closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent `#quit`.
    Quit,
    /// Kicked off the server by an operator.
    Kicked,
    /// Banned from the server.
    Banned,
    /// Did not answer the idle check.
    IdleTimeout,
    /// Kept flooding past the rate limit.
    Flooding,
    /// Could not keep up with its output.
    SlowConsumer,
    /// The server is shutting down.
    Shutdown,
}

/// Why [`crate::Server::accept`] turned a connection away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The error code (server-full, too-many-connections or banned).
    pub code: ErrorCode,
    /// The peer's address.
    pub peer: IpAddr,
    /// The reply line to send before closing, LF included.
    pub line: Bytes,
}
