//! The server's settings: the config file's `[server]` table plus the
//! core's settings at the top level (the same keys a transcript's `config`
//! lines use).
//!
//! ```toml
//! [server]
//! bind = "127.0.0.1:9090"     # the native dialect's listener
//! irc_bind = "127.0.0.1:6667" # the IRC listener; "none" turns it off
//! threads = 0              # 0 = one I/O thread per core
//! data_dir = "chat_logs"
//! fsync = "10ms"           # "always", "never", or a group-commit interval
//! persist = true           # false: history in memory only, no log files
//! open_log_files = 64      # log files the history writer keeps open
//! history_queue = 16384    # records waiting for the writer before `not-stored`
//! backend = "poll"         # or "iocp"
//! max_inbox_bytes = 8388608 # input waiting for the core before reads pause
//! tls_bind = "none"        # native over TLS, e.g. "0.0.0.0:9443"
//! irc_tls_bind = "none"    # IRC over TLS, e.g. "0.0.0.0:6697"
//! http_bind = "127.0.0.1:8080" # web client, WebSocket, /metrics; "none" turns it off
//! https_bind = "none"      # the same over TLS, e.g. "0.0.0.0:8443"
//!
//! [http]
//! allowed_origins = []     # pages besides the server's own that may open a WebSocket
//! request_timeout = "10s"  # to send the request head
//!
//! [tls]                    # needed by tls_bind / irc_tls_bind
//! cert = "cert.pem"        # PEM chain, leaf first (re-read on SIGHUP)
//! key = "key.pem"          # PEM private key
//! self_signed = false      # true: a certificate made at start-up instead
//! handshake_timeout = "10s"
//!
//! history_size = 100
//! [history]
//! retention = "90d"        # records older than this are deleted; absent = forever
//! max_bytes = 10737418240  # all history on disk together; absent = no limit
//! room_max_bytes = 1073741824 # each room (and the whispers); absent = no limit
//! segment_bytes = 4194304  # a room's segment is sealed at this size
//! [history.rooms.general]  # per-room overrides
//! retention = "7d"
//! max_bytes = 1048576
//! [rate_limit]
//! messages = 20
//! window = "10s"
//!
//! [cluster]                # one node of several sharing Redis (docs/CLUSTER.md)
//! redis = "redis://127.0.0.1:6379/0"
//! node_name = "n1"         # unique among live nodes
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chatd_core::{Config, Dialect};
use serde::{Deserialize, Serialize};

use crate::hub::{DEFAULT_MAX_INBOX_BYTES, MIN_INBOX_BYTES};
use crate::persist::{
    DEFAULT_SEGMENT_BYTES, FsyncPolicy, HistoryLimits, MIN_SEGMENT_BYTES, Retention, WHISPERS_DIR,
    WriterOptions,
};

/// Everything `chatd serve` needs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// The `[server]` table.
    pub server: ServerSettings,
    /// The core's settings.
    pub chat: Config,
    /// The `[history]` table.
    pub history: HistorySettings,
    /// The `[tls]` table.
    pub tls: TlsSettings,
    /// The `[http]` table.
    pub http: HttpSettings,
    /// The `[cluster]` table: `None` for a single server.
    pub cluster: Option<ClusterSettings>,
}

/// The `[cluster]` table: this server is one node of a cluster sharing
/// rooms, nicknames and history through Redis (docs/CLUSTER.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The Redis URL, `redis://HOST:PORT/DB`.
    pub redis: String,
    /// This node's name, unique among live nodes.
    pub node: chatd_core::cluster::NodeName,
}

impl ClusterSettings {
    /// Checks both halves: a Redis URL, and a valid node name.
    pub fn new(redis: &str, node_name: &str) -> Result<Self, String> {
        if !redis.starts_with("redis://") || redis::Client::open(redis).is_err() {
            return Err(format!(
                "redis = {redis:?} is not a Redis URL such as \"redis://127.0.0.1:6379/0\""
            ));
        }
        let node = chatd_core::cluster::NodeName::parse(node_name)
            .map_err(|error| format!("node_name = {node_name:?}: {error}"))?;
        Ok(Self {
            redis: redis.to_owned(),
            node,
        })
    }
}

/// Reads the `[cluster]` table: both keys are needed.
fn parse_cluster(value: toml::Value) -> Result<ClusterSettings, String> {
    let (mut redis, mut node_name) = (None, None);
    for (key, value) in table_of("[cluster]", value)? {
        let slot = match key.as_str() {
            "redis" => &mut redis,
            "node_name" => &mut node_name,
            _ => return Err(format!("unknown setting {key} (redis, node_name)")),
        };
        let text = value
            .as_str()
            .ok_or_else(|| format!("{key} = {value} is not a string"))?;
        *slot = Some(text.to_owned());
    }
    match (redis, node_name) {
        (Some(redis), Some(node_name)) => ClusterSettings::new(&redis, &node_name),
        (None, _) => Err("redis is missing (e.g. redis = \"redis://127.0.0.1:6379/0\")".into()),
        (_, None) => Err("node_name is missing (e.g. node_name = \"n1\")".into()),
    }
}

/// The `[http]` table: what the HTTP listener allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Origins (`https://chat.example.org`) besides the server's own whose
    /// pages may open a WebSocket; any other origin gets 403.
    pub allowed_origins: Vec<String>,
    /// How long a connection may take to send its request head.
    pub request_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            request_timeout: crate::web::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Reads the `[http]` table.
fn parse_http(value: toml::Value) -> Result<HttpSettings, String> {
    let mut http = HttpSettings::default();
    for (key, value) in table_of("[http]", value)? {
        match key.as_str() {
            "allowed_origins" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| format!("allowed_origins = {value} is not a list of origins"))?;
                for origin in list {
                    let origin = origin
                        .as_str()
                        .filter(|o| o.starts_with("http://") || o.starts_with("https://"))
                        .ok_or_else(|| {
                            format!("allowed_origins: {origin} is not an origin such as \"https://chat.example.org\"")
                        })?;
                    http.allowed_origins.push(origin.to_string());
                }
            }
            "request_timeout" => {
                http.request_timeout = duration_of(&key, &value)?;
                if http.request_timeout.is_zero() {
                    return Err("request_timeout must be longer than 0".into());
                }
            }
            _ => {
                return Err(format!(
                    "unknown setting {key} (allowed_origins, request_timeout)"
                ));
            }
        }
    }
    Ok(http)
}

/// The `[tls]` table: the certificate the TLS listeners present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain (PEM, leaf first).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// Make a certificate for localhost at start-up instead of files.
    pub self_signed: bool,
    /// How long a client may take to complete its TLS handshake.
    pub handshake_timeout: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            self_signed: false,
            handshake_timeout: crate::tls::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl TlsSettings {
    /// Where the certificate comes from, or why there is none: a TLS
    /// listener needs `cert` and `key`, or `self_signed`.
    pub fn source(&self) -> Result<crate::tls::CertSource, String> {
        match (&self.cert, &self.key, self.self_signed) {
            (None, None, true) => Ok(crate::tls::CertSource::SelfSigned),
            (Some(cert), Some(key), false) => Ok(crate::tls::CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (_, _, true) => Err("[tls]: self_signed cannot be combined with cert and key".into()),
            _ => Err("a TLS listener (tls_bind, irc_tls_bind, https_bind) needs a certificate: [tls] cert and key (--tls-cert, --tls-key), or self_signed (--tls-self-signed)".into()),
        }
    }
}

/// Reads the `[tls]` table.
fn parse_tls(value: toml::Value) -> Result<TlsSettings, String> {
    let mut tls = TlsSettings::default();
    for (key, value) in table_of("[tls]", value)? {
        let path = |value: &toml::Value| {
            value
                .as_str()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{key} = {value} is not a file name"))
        };
        match key.as_str() {
            "cert" => tls.cert = Some(path(&value)?),
            "key" => tls.key = Some(path(&value)?),
            "self_signed" => {
                tls.self_signed = value
                    .as_bool()
                    .ok_or_else(|| format!("self_signed = {value} is not true or false"))?;
            }
            "handshake_timeout" => {
                tls.handshake_timeout = duration_of(&key, &value)?;
                if tls.handshake_timeout.is_zero() {
                    return Err("handshake_timeout must be longer than 0".into());
                }
            }
            _ => {
                return Err(format!(
                    "unknown setting {key} (cert, key, self_signed, handshake_timeout)"
                ));
            }
        }
    }
    Ok(tls)
}

/// The `[history]` table: how history is laid out on disk and how much of
/// it is kept (docs/HISTORY.md, "Retention").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySettings {
    /// Records older than this are deleted (whole segments); `None`
    /// keeps them forever.
    pub retention: Option<Duration>,
    /// Most bytes of history on disk, all rooms and whispers together.
    pub max_bytes: Option<u64>,
    /// Most bytes of history on disk per room (and for the whispers).
    pub room_max_bytes: Option<u64>,
    /// A room's segment is sealed once it is this long (at least
    /// [`MIN_SEGMENT_BYTES`]).
    pub segment_bytes: u64,
    /// Overrides per room (`[history.rooms.NAME]`; `_whispers` for the
    /// whispers).
    pub rooms: BTreeMap<String, RoomHistorySettings>,
}

/// A `[history.rooms.NAME]` table: one room's limits instead of the
/// defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomHistorySettings {
    /// This room's `retention`.
    pub retention: Option<Duration>,
    /// This room's `room_max_bytes`.
    pub max_bytes: Option<u64>,
}

impl Default for HistorySettings {
    fn default() -> Self {
        Self {
            retention: None,
            max_bytes: None,
            room_max_bytes: None,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            rooms: BTreeMap::new(),
        }
    }
}

impl HistorySettings {
    /// Checks the values, naming the setting that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(format!(
                "segment_bytes = {} is too small (at least {MIN_SEGMENT_BYTES})",
                self.segment_bytes
            ));
        }
        let positive = |key: String, bytes: Option<u64>| match bytes {
            Some(0) => Err(format!(
                "{key} must be at least 1 (leave it out for no limit)"
            )),
            _ => Ok(()),
        };
        let some_time = |key: String, age: Option<Duration>| match age {
            Some(age) if age.is_zero() => Err(format!(
                "{key} must be longer than 0 (leave it out to keep history forever)"
            )),
            _ => Ok(()),
        };
        positive("max_bytes".into(), self.max_bytes)?;
        positive("room_max_bytes".into(), self.room_max_bytes)?;
        some_time("retention".into(), self.retention)?;
        for (name, room) in &self.rooms {
            let is_room = chatd_core::RoomName::parse(name).is_ok_and(|room| room.as_str() == name);
            if !is_room && name != WHISPERS_DIR {
                return Err(format!(
                    "[history.rooms.{name}]: not a room name (lowercase letters, digits, _ - and ., starting with a letter or digit; or {WHISPERS_DIR})"
                ));
            }
            positive(format!("[history.rooms.{name}] max_bytes"), room.max_bytes)?;
            some_time(format!("[history.rooms.{name}] retention"), room.retention)?;
        }
        Ok(())
    }

    /// What the history writer deletes.
    pub fn retention(&self) -> Retention {
        Retention {
            default: HistoryLimits {
                max_age: self.retention,
                max_bytes: self.room_max_bytes,
            },
            max_bytes: self.max_bytes,
            overrides: self
                .rooms
                .iter()
                .map(|(name, room)| {
                    let limits = HistoryLimits {
                        max_age: room.retention,
                        max_bytes: room.max_bytes,
                    };
                    (name.clone(), limits)
                })
                .collect(),
        }
    }
}

/// The `[server]` table: how the process runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Where the native dialect's listener binds (`IP:PORT`).
    pub bind: String,
    /// Where the IRC listener binds (`IP:PORT`), or [`NO_LISTENER`] for
    /// none.
    pub irc_bind: String,
    /// I/O threads; 0 means one per available core.
    pub threads: usize,
    /// Where room logs live.
    pub data_dir: PathBuf,
    /// When history is forced to disk.
    pub fsync: FsyncPolicy,
    /// Whether room history is written to `data_dir` (and recovered from
    /// it at start). Off, history lives in memory only and is lost at exit.
    pub persist: bool,
    /// `poll` or `iocp`.
    pub backend: String,
    /// Received bytes that may wait for the core before I/O threads stop
    /// reading (backpressure; at least [`MIN_INBOX_BYTES`]).
    pub max_inbox_bytes: usize,
    /// Most log files the history writer keeps open at once (at least 1).
    pub open_log_files: usize,
    /// Most records waiting for the history writer; past it, new records
    /// are answered `not-stored` at once (at least 1).
    pub history_queue: usize,
    /// Where the native dialect's TLS listener binds, or [`NO_LISTENER`].
    pub tls_bind: String,
    /// Where the IRC TLS listener binds, or [`NO_LISTENER`].
    pub irc_tls_bind: String,
    /// Where the HTTP listener (web client, WebSocket, metrics) binds, or
    /// [`NO_LISTENER`].
    pub http_bind: String,
    /// Where the HTTPS listener binds, or [`NO_LISTENER`].
    pub https_bind: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:9090".into(),
            irc_bind: DEFAULT_IRC_BIND.into(),
            threads: 0,
            data_dir: PathBuf::from("chat_logs"),
            fsync: FsyncPolicy::Every(std::time::Duration::from_millis(10)),
            persist: true,
            backend: "poll".into(),
            max_inbox_bytes: DEFAULT_MAX_INBOX_BYTES,
            open_log_files: WriterOptions::DEFAULT_OPEN_FILES,
            history_queue: WriterOptions::DEFAULT_QUEUE,
            tls_bind: NO_LISTENER.into(),
            irc_tls_bind: NO_LISTENER.into(),
            http_bind: DEFAULT_HTTP_BIND.into(),
            https_bind: NO_LISTENER.into(),
        }
    }
}

/// Reads the `[history]` table, naming the key of any bad value.
fn parse_history(value: toml::Value) -> Result<HistorySettings, String> {
    let mut history = HistorySettings::default();
    for (key, value) in table_of("[history]", value)? {
        match key.as_str() {
            "retention" => history.retention = Some(duration_of(&key, &value)?),
            "max_bytes" => history.max_bytes = Some(bytes_of(&key, &value)?),
            "room_max_bytes" => history.room_max_bytes = Some(bytes_of(&key, &value)?),
            "segment_bytes" => history.segment_bytes = bytes_of(&key, &value)?,
            "rooms" => {
                for (name, room) in table_of("rooms", value)? {
                    let mut settings = RoomHistorySettings::default();
                    let what = format!("[history.rooms.{name}]");
                    for (key, value) in table_of(&what, room)? {
                        let named = format!("{what} {key}");
                        match key.as_str() {
                            "retention" => settings.retention = Some(duration_of(&named, &value)?),
                            "max_bytes" => settings.max_bytes = Some(bytes_of(&named, &value)?),
                            _ => {
                                return Err(format!(
                                    "{what}: unknown setting {key} (retention, max_bytes)"
                                ));
                            }
                        }
                    }
                    history.rooms.insert(name, settings);
                }
            }
            _ => {
                return Err(format!(
                    "unknown setting {key} (retention, max_bytes, room_max_bytes, segment_bytes, rooms)"
                ));
            }
        }
    }
    Ok(history)
}

fn table_of(what: &str, value: toml::Value) -> Result<toml::Table, String> {
    match value {
        toml::Value::Table(table) => Ok(table),
        other => Err(format!("{what} must be a table, not {}", other.type_str())),
    }
}

fn bytes_of(key: &str, value: &toml::Value) -> Result<u64, String> {
    value
        .as_integer()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| format!("{key} = {value} is not a number of bytes"))
}

fn duration_of(key: &str, value: &toml::Value) -> Result<Duration, String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("{key} = {value} is not a duration such as \"90d\""))?;
    chatd_core::duration::parse(text).map_err(|error| format!("{key}: {error}"))
}

/// The IRC listener's default address: IRC's usual port, on loopback
/// like the native listener, so a plain `chatd serve` speaks both.
pub const DEFAULT_IRC_BIND: &str = "127.0.0.1:6667";

/// The HTTP listener's default address, on loopback like the others, so
/// a plain `chatd serve` gives a working page.
pub const DEFAULT_HTTP_BIND: &str = "127.0.0.1:8080";

/// The address value that turns an optional listener off.
pub const NO_LISTENER: &str = "none";

/// One listener the server opens: where, and which dialect the
/// connections it accepts speak. Later listeners (TLS, HTTP) are more
/// entries in [`ServerSettings::listeners`], not another code path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Where to bind.
    pub address: SocketAddr,
    /// What its connections speak.
    pub dialect: Dialect,
    /// Whether its connections use TLS.
    pub tls: bool,
    /// The HTTP listener: connections speak HTTP, and `dialect` only once
    /// they upgrade to a WebSocket (by route).
    pub http: bool,
}

impl ListenerSettings {
    /// The listener's name in messages: `native`, `irc` or `http`.
    pub fn name(&self) -> &'static str {
        if self.http {
            "http"
        } else {
            self.dialect.name()
        }
    }
}

/// A listen address in the settings that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {text:?} is not a listen address for the {listener} listener (expected IP:PORT{})", if *.may_be_off { ", or \"none\"" } else { "" })]
pub struct ListenAddressError {
    /// The setting (`bind`, `irc_bind`).
    pub key: &'static str,
    /// Its value.
    pub text: String,
    /// The listener it configures (`native`, `irc`, `http`).
    pub listener: &'static str,
    /// Whether `none` would have been accepted.
    pub may_be_off: bool,
}

impl ServerSettings {
    /// The listeners to open, native first (the one every deployment
    /// has), then IRC, then the TLS ones.
    pub fn listeners(&self) -> Result<Vec<ListenerSettings>, ListenAddressError> {
        let configured = [
            ("bind", &self.bind, Dialect::Native, false, false, false),
            ("irc_bind", &self.irc_bind, Dialect::Irc, true, false, false),
            (
                "tls_bind",
                &self.tls_bind,
                Dialect::Native,
                true,
                true,
                false,
            ),
            (
                "irc_tls_bind",
                &self.irc_tls_bind,
                Dialect::Irc,
                true,
                true,
                false,
            ),
            (
                "http_bind",
                &self.http_bind,
                Dialect::Native,
                true,
                false,
                true,
            ),
            (
                "https_bind",
                &self.https_bind,
                Dialect::Native,
                true,
                true,
                true,
            ),
        ];
        let mut listeners = Vec::with_capacity(configured.len());
        for (key, text, dialect, may_be_off, tls, http) in configured {
            if may_be_off && text.trim() == NO_LISTENER {
                continue;
            }
            let wanted = ListenerSettings {
                address: SocketAddr::from(([0, 0, 0, 0], 0)),
                dialect,
                tls,
                http,
            };
            let address = text.trim().parse().map_err(|_| ListenAddressError {
                key,
                text: text.clone(),
                listener: wanted.name(),
                may_be_off,
            })?;
            listeners.push(ListenerSettings { address, ..wanted });
        }
        Ok(listeners)
    }

    /// The thread count with 0 resolved to the available cores.
    pub fn resolved_threads(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped settings.
    #[error("invalid config file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
}

impl Settings {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|cause| SettingsError::Read {
            path: path.display().to_string(),
            cause,
        })?;
        Self::parse(&text).map_err(|message| SettingsError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses config file text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let server: ServerSettings = match table.remove("server") {
            Some(value) => value
                .try_into()
                .map_err(|e: toml::de::Error| format!("[server]: {}", e.message()))?,
            None => ServerSettings::default(),
        };
        if server.max_inbox_bytes < MIN_INBOX_BYTES {
            return Err(format!(
                "[server]: max_inbox_bytes must be at least {MIN_INBOX_BYTES} (one read)"
            ));
        }
        if server.open_log_files == 0 || server.history_queue == 0 {
            return Err("[server]: open_log_files and history_queue must be at least 1".into());
        }
        server
            .listeners()
            .map_err(|error| format!("[server]: {error}"))?;
        let history = match table.remove("history") {
            Some(value) => parse_history(value).map_err(|error| format!("[history]: {error}"))?,
            None => HistorySettings::default(),
        };
        history
            .validate()
            .map_err(|error| format!("[history]: {error}"))?;
        let tls = match table.remove("tls") {
            Some(value) => parse_tls(value).map_err(|error| format!("[tls]: {error}"))?,
            None => TlsSettings::default(),
        };
        let http = match table.remove("http") {
            Some(value) => parse_http(value).map_err(|error| format!("[http]: {error}"))?,
            None => HttpSettings::default(),
        };
        let cluster = match table.remove("cluster") {
            Some(value) => {
                Some(parse_cluster(value).map_err(|error| format!("[cluster]: {error}"))?)
            }
            None => None,
        };
        let chat: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_owned())?;
        chat.validate().map_err(|e| e.to_string())?;
        Ok(Self {
            server,
            chat,
            history,
            tls,
            http,
            cluster,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_cluster_table_needs_a_redis_url_and_a_node_name() {
        let settings = Settings::parse(
            "[cluster]\nredis = \"redis://127.0.0.1:6379/0\"\nnode_name = \"n1\"\n",
        )
        .unwrap();
        let cluster = settings.cluster.unwrap();
        assert_eq!(cluster.redis, "redis://127.0.0.1:6379/0");
        assert_eq!(cluster.node.as_str(), "n1");
        assert!(Settings::parse("").unwrap().cluster.is_none());
        for (bad, says) in [
            (
                "[cluster]\nredis = \"redis://h/0\"\n",
                "node_name is missing",
            ),
            ("[cluster]\nnode_name = \"n1\"\n", "redis is missing"),
            (
                "[cluster]\nredis = \"redis://h/0\"\nnode_name = \"N-1\"\n",
                "node_name",
            ),
            (
                "[cluster]\nredis = \"http://h/\"\nnode_name = \"n1\"\n",
                "not a Redis URL",
            ),
            (
                "[cluster]\nredis = \"redis://h/0\"\nnode_name = \"n1\"\nport = 1\n",
                "unknown setting port",
            ),
        ] {
            let error = Settings::parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }

    #[test]
    fn server_table_and_core_settings_share_one_file() {
        let settings = Settings::parse(
            "history_size = 7\n[server]\nfsync = \"always\"\nthreads = 3\n[rate_limit]\nmessages = 2\n",
        )
        .unwrap();
        assert_eq!(settings.chat.history_size, 7);
        assert_eq!(settings.chat.rate_limit.messages, 2);
        assert_eq!(settings.server.fsync, FsyncPolicy::Always);
        assert_eq!(settings.server.threads, 3);
        assert_eq!(settings.chat.rate_limit.window, Duration::from_secs(10));
    }

    #[test]
    fn the_irc_listener_is_on_by_default_beside_the_native_one() {
        let settings = Settings::parse("").unwrap();
        assert_eq!(settings.server.irc_bind, DEFAULT_IRC_BIND);
        let listeners = settings.server.listeners().unwrap();
        assert_eq!(
            listeners,
            [
                ListenerSettings {
                    address: "127.0.0.1:9090".parse().unwrap(),
                    dialect: Dialect::Native,
                    tls: false,
                    http: false,
                },
                ListenerSettings {
                    address: "127.0.0.1:6667".parse().unwrap(),
                    dialect: Dialect::Irc,
                    tls: false,
                    http: false,
                },
                ListenerSettings {
                    address: "127.0.0.1:8080".parse().unwrap(),
                    dialect: Dialect::Native,
                    tls: false,
                    http: true,
                },
            ]
        );
    }

    #[test]
    fn tls_listeners_and_the_tls_table_are_read() {
        let settings = Settings::parse(
            "[server]\ntls_bind = \"127.0.0.1:9443\"\nirc_tls_bind = \"127.0.0.1:6697\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nhandshake_timeout = \"3s\"\n",
        )
        .unwrap();
        let tls: Vec<(Dialect, bool)> = settings
            .server
            .listeners()
            .unwrap()
            .iter()
            .map(|listener| (listener.dialect, listener.tls))
            .collect();
        assert_eq!(
            tls,
            [
                (Dialect::Native, false),
                (Dialect::Irc, false),
                (Dialect::Native, true),
                (Dialect::Irc, true),
                // The HTTP listener, on by default.
                (Dialect::Native, false),
            ]
        );
        assert_eq!(settings.tls.handshake_timeout, Duration::from_secs(3));
        assert_eq!(
            settings.tls.source().unwrap(),
            crate::tls::CertSource::Files {
                cert: "c.pem".into(),
                key: "k.pem".into(),
            }
        );
        // By default: no TLS listener, and no certificate needed.
        let plain = Settings::parse("").unwrap();
        assert!(plain.server.listeners().unwrap().iter().all(|l| !l.tls));
        assert_eq!(plain.tls.handshake_timeout, Duration::from_secs(10));
        assert!(
            plain
                .tls
                .source()
                .unwrap_err()
                .contains("needs a certificate")
        );
        for (text, named) in [
            ("[tls]\nhandshake_timeout = \"0s\"", "handshake_timeout"),
            ("[tls]\ncertificate = \"c.pem\"", "certificate"),
            ("[tls]\nself_signed = 1", "self_signed"),
            ("[server]\ntls_bind = \"localhost\"", "tls_bind"),
        ] {
            let error = Settings::parse(text).unwrap_err();
            assert!(error.contains(named), "{text}: {error}");
        }
    }

    #[test]
    fn irc_bind_and_http_bind_none_leave_only_the_native_listener() {
        let settings =
            Settings::parse("[server]\nirc_bind = \"none\"\nhttp_bind = \"none\"\n").unwrap();
        let dialects: Vec<Dialect> = settings
            .server
            .listeners()
            .unwrap()
            .iter()
            .map(|listener| listener.dialect)
            .collect();
        assert_eq!(dialects, [Dialect::Native]);
    }

    #[test]
    fn a_bad_listen_address_names_the_setting_and_the_dialect() {
        let error = Settings::parse("[server]\nirc_bind = \"localhost\"\n").unwrap_err();
        assert!(
            error.contains("irc_bind") && error.contains("irc listener"),
            "{error}"
        );
        // "none" only turns off listeners that may be off.
        let error = Settings::parse("[server]\nbind = \"none\"\n").unwrap_err();
        assert!(
            error.contains("bind") && error.contains("native listener"),
            "{error}"
        );
        assert!(!error.contains("or \"none\""), "{error}");
        let server = ServerSettings {
            irc_bind: "127.0.0.1:99999".into(),
            ..ServerSettings::default()
        };
        assert_eq!(
            server.listeners().unwrap_err(),
            ListenAddressError {
                key: "irc_bind",
                text: "127.0.0.1:99999".into(),
                listener: "irc",
                may_be_off: true,
            }
        );
    }

    #[test]
    fn the_history_table_sets_segments_and_retention_with_room_overrides() {
        let settings = Settings::parse(
            "[history]\nretention = \"90d\"\nmax_bytes = 1000000\nroom_max_bytes = 500000\nsegment_bytes = 65536\n[history.rooms.general]\nretention = \"7d\"\n[history.rooms._whispers]\nmax_bytes = 1000\n",
        )
        .unwrap();
        let history = &settings.history;
        assert_eq!(history.segment_bytes, 65536);
        let retention = history.retention();
        assert_eq!(retention.max_bytes, Some(1_000_000));
        let day = Duration::from_secs(86_400);
        assert_eq!(
            retention.limits_for("general"),
            HistoryLimits {
                max_age: Some(7 * day),
                max_bytes: Some(500_000),
            }
        );
        assert_eq!(
            retention.limits_for("_whispers"),
            HistoryLimits {
                max_age: Some(90 * day),
                max_bytes: Some(1000),
            }
        );
        assert_eq!(
            retention.limits_for("rust"),
            HistoryLimits {
                max_age: Some(90 * day),
                max_bytes: Some(500_000),
            }
        );
        // Absent: keep everything, 4 MiB segments.
        let settings = Settings::parse("").unwrap();
        assert!(settings.history.retention().is_off());
        assert_eq!(settings.history.segment_bytes, DEFAULT_SEGMENT_BYTES);
    }

    #[test]
    fn bad_history_settings_name_the_setting() {
        for (text, named) in [
            ("[history]\nsegment_bytes = 1000", "segment_bytes"),
            ("[history]\nretention = \"soon\"", "retention"),
            ("[history]\nretention = \"0s\"", "retention"),
            ("[history]\nmax_bytes = 0", "max_bytes"),
            ("[history]\nroom_max_bytes = -5", "room_max_bytes"),
            ("[history]\nkeep = 1", "keep"),
            ("[history.rooms.General]\nretention = \"1d\"", "General"),
            ("[history.rooms.general]\nmax_bytes = 0", "general"),
            ("[history.rooms.general]\nsize = 3", "size"),
        ] {
            let error = Settings::parse(text).unwrap_err();
            assert!(
                error.starts_with("[history]") && error.contains(named),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn unknown_and_invalid_settings_are_refused() {
        assert!(
            Settings::parse("no_such_thing = 1")
                .unwrap_err()
                .contains("no_such_thing")
        );
        assert!(
            Settings::parse("[server]\nport = 1")
                .unwrap_err()
                .contains("port")
        );
        assert!(
            Settings::parse("max_line_bytes = 3")
                .unwrap_err()
                .contains("max_line_bytes")
        );
        assert!(Settings::parse("[server]\nfsync = \"sometimes\"").is_err());
        assert!(
            Settings::parse("[server]\nmax_inbox_bytes = 1000")
                .unwrap_err()
                .contains("max_inbox_bytes")
        );
        assert!(
            Settings::parse("[server]\nopen_log_files = 0")
                .unwrap_err()
                .contains("open_log_files")
        );
    }
}
