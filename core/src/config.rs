//! Every setting of the core, with the defaults a public server should run.
//!
//! The same struct is read from the TOML config file (`chatd serve --config`)
//! and from a transcript's `config` lines, so tests exercise the real format.

use std::time::Duration;

use argon2::PasswordHash;
use serde::{Deserialize, Serialize};

use crate::accounts::AccountsConfig;
use crate::duration::serde_human;
use crate::ids::{NameError, Nick};
use crate::login::LoginConfig;
use crate::rate_limit::Budget;

/// The core's settings. Every field has a default; see [`Config::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Longest accepted line in bytes, without its line ending.
    pub max_line_bytes: usize,
    /// Most connections the server holds at once.
    pub max_connections: usize,
    /// Most connections from one IP address (0 = no limit).
    pub max_connections_per_ip: usize,
    /// Most rooms that may exist at once, #general included.
    pub max_rooms: usize,
    /// Joins, leaves, quits and nick changes are announced only in rooms
    /// of at most this many members (huge rooms would drown in them);
    /// moderation is always announced.
    pub presence_announce_limit: usize,
    /// Messages kept per room for `#history`.
    pub history_size: usize,
    /// How many messages `#history` shows when no count is given.
    pub history_default: usize,
    /// Most entries one `#history` answer shows (a larger count asks for
    /// this many).
    pub history_page: usize,
    /// Lines older than this are not shown by `#history` (the engine sets
    /// it from its `[history] retention`; not a key of this table).
    #[serde(skip)]
    pub history_retention: Option<Duration>,
    /// Bytes of history kept in memory for all rooms together; past it,
    /// histories of rooms that no longer exist go first, then the biggest
    /// rooms' oldest lines.
    pub history_bytes: usize,
    /// Whether private messages (`#msg`) are written to history logs.
    pub persist_private_messages: bool,
    /// Bytes a backend may queue for one connection before it is cut off as
    /// a slow consumer.
    pub max_outbound_bytes: usize,
    /// Message rate limits.
    pub rate_limit: RateLimitConfig,
    /// Idle connection checks.
    pub idle: IdleConfig,
    /// Bounds on what one client or address can make the server hold.
    pub limits: LimitsConfig,
    /// Server operators and their password hashes.
    pub operators: Vec<OperatorConfig>,
    /// Delays after failed operator logins.
    pub operator_login: LoginConfig,
    /// Registered nicknames: protection grace, password rules.
    pub accounts: AccountsConfig,
    /// What IRC clients are told at registration, and the password they
    /// must give.
    pub irc: IrcConfig,
    /// This server's place in a cluster, if it is a node of one. Not read
    /// from the core's TOML: the engine sets it from its `[cluster]` table.
    #[serde(skip)]
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_line_bytes: 4096,
            max_connections: 20_000,
            max_connections_per_ip: 100,
            max_rooms: 10_000,
            presence_announce_limit: 500,
            history_size: 100,
            history_default: 20,
            history_page: 100,
            history_retention: None,
            history_bytes: 64 << 20,
            persist_private_messages: false,
            max_outbound_bytes: 1 << 20,
            rate_limit: RateLimitConfig::default(),
            idle: IdleConfig::default(),
            limits: LimitsConfig::default(),
            operators: Vec::new(),
            operator_login: LoginConfig::default(),
            accounts: AccountsConfig::default(),
            irc: IrcConfig::default(),
            cluster: None,
        }
    }
}

/// The `[irc]` table: how the server presents itself to IRC clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IrcConfig {
    /// The server's name, the source of every numeric (a host-like name).
    pub server_name: String,
    /// The network's name, announced in ISUPPORT as `NETWORK`.
    pub network: String,
    /// The password every IRC client must give with `PASS` before it
    /// registers; none if absent.
    pub password: Option<String>,
    /// The message of the day, one line per line; `422` if absent.
    pub motd: Option<String>,
}

impl IrcConfig {
    /// Names must fit where IRC puts them: a server name is a host name
    /// (it is every numeric's source), a network name one word, a
    /// password one parameter, and the MOTD printable lines.
    fn validate(&self) -> Result<(), ConfigError> {
        let host_like = |name: &str| {
            !name.is_empty()
                && name.len() <= 63
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                && !name.starts_with(['.', '-'])
        };
        in_range(
            host_like(&self.server_name),
            "irc.server_name",
            "1 to 63 letters, digits, dots and dashes, like a host name",
        )?;
        let word = |text: &str, max: usize| {
            !text.is_empty() && text.len() <= max && text.bytes().all(|b| b.is_ascii_graphic())
        };
        in_range(
            word(&self.network, 32),
            "irc.network",
            "1 to 32 printable ASCII characters without spaces",
        )?;
        in_range(
            self.password.as_deref().is_none_or(|p| word(p, 128)),
            "irc.password",
            "1 to 128 printable ASCII characters without spaces",
        )?;
        in_range(
            self.motd.as_deref().is_none_or(|motd| {
                motd.len() <= 16 * 1024
                    && motd
                        .lines()
                        .all(|line| line.len() <= 400 && !line.chars().any(char::is_control))
            }),
            "irc.motd",
            "at most 16 KiB, lines of at most 400 bytes without control characters",
        )?;
        Ok(())
    }
}

impl Default for IrcConfig {
    fn default() -> Self {
        Self {
            server_name: "chatd.local".into(),
            network: "chatd".into(),
            password: None,
            motd: None,
        }
    }
}

/// Sliding-window rate limits on the lines a client sends (commands
/// included: a flood of `#nick` is as disruptive as a flood of chat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Whether lines are rate limited at all.
    pub enabled: bool,
    /// Lines one connection may send per window.
    pub messages: u32,
    /// The per-connection window.
    #[serde(with = "serde_human")]
    pub window: Duration,
    /// Lines all connections from one IP address may send per window.
    pub ip_messages: u32,
    /// The per-IP window.
    #[serde(with = "serde_human")]
    pub ip_window: Duration,
    /// Rejected lines within one window after which the client is
    /// disconnected for flooding (0 = never disconnect).
    pub flood_disconnect_after: u32,
}

impl RateLimitConfig {
    /// The per-connection budget.
    pub fn connection_budget(&self) -> Budget {
        Budget {
            messages: self.messages,
            window: self.window,
        }
    }

    /// The per-IP budget.
    pub fn ip_budget(&self) -> Budget {
        Budget {
            messages: self.ip_messages,
            window: self.ip_window,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            messages: 20,
            window: Duration::from_secs(10),
            ip_messages: 60,
            ip_window: Duration::from_secs(10),
            flood_disconnect_after: 20,
        }
    }
}

/// How silent connections are checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdleConfig {
    /// Whether idle connections are pinged and dropped at all.
    pub enabled: bool,
    /// Silence after which the server sends a ping.
    #[serde(with = "serde_human")]
    pub ping_after: Duration,
    /// Time a pinged client has to send any line before it is disconnected.
    #[serde(with = "serde_human")]
    pub timeout: Duration,
}

impl Default for IdleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ping_after: Duration::from_secs(300),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Bounds on everything an unprivileged client or address can make the
/// server hold, so no stranger can grow its memory without limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Rooms one connection may have created that still exist.
    pub rooms_per_connection: usize,
    /// Rooms the connections of one address (group) may have created that
    /// still exist.
    pub rooms_per_ip: usize,
    /// Rooms one connection may be in at once (IRC clients join many;
    /// a native client is always in one).
    pub rooms_joined: usize,
    /// Bans one room may hold (address bans and IRC ban masks together).
    pub bans_per_room: usize,
    /// Mutes one room may hold.
    pub mutes_per_room: usize,
    /// Pending invitations one private room may hold.
    pub invites_per_room: usize,
    /// Server bans in force at once.
    pub server_bans: usize,
    /// Entries per page of `#who` and `#rooms`.
    pub list_page: usize,
    /// Most entries one `#search` answer shows (the newest matches).
    pub search_results: usize,
    /// IPv6 addresses in the same network of this prefix length share
    /// per-address limits (one person usually holds a whole /64).
    pub ipv6_prefix: u8,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            rooms_per_connection: 10,
            rooms_per_ip: 50,
            rooms_joined: 50,
            bans_per_room: 500,
            mutes_per_room: 500,
            invites_per_room: 500,
            server_bans: 10_000,
            list_page: 100,
            search_results: 20,
            ipv6_prefix: 64,
        }
    }
}

/// One server operator: `#oper NAME PASSWORD` checks the password against
/// the Argon2 hash in PHC string form (as `chatd hash-password` prints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// The operator account's name (not a nickname; any valid nick syntax).
    pub name: String,
    /// Argon2 PHC string, e.g. `$argon2id$v=19$m=19456,t=2,p=1$...`.
    pub password_hash: String,
}

/// A setting that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A numeric setting is outside what the server can work with.
    #[error("{setting} must be {rule}")]
    OutOfRange {
        /// The setting's name as written in the config file.
        setting: &'static str,
        /// What it must be.
        rule: &'static str,
    },
    /// An operator's name is not a valid name.
    #[error("operator name {name:?} is invalid: {source}")]
    BadOperatorName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        source: NameError,
    },
    /// An operator's password hash is not a PHC string.
    #[error("operator {name:?} has a password_hash that is not an Argon2 PHC string ({reason})")]
    BadPasswordHash {
        /// The operator's name.
        name: String,
        /// The parser's complaint.
        reason: String,
    },
    /// Two operators share a name.
    #[error("operator {0:?} is listed twice")]
    DuplicateOperator(String),
}

/// `Ok` when `ok`, else the error naming the setting and the rule it breaks:
/// the one shape of every range check on settings.
pub(crate) fn in_range(
    ok: bool,
    setting: &'static str,
    rule: &'static str,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange { setting, rule })
    }
}

impl Config {
    /// Checks that the settings are usable; the server refuses to start otherwise.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = in_range;
        range(
            (64..=1 << 20).contains(&self.max_line_bytes),
            "max_line_bytes",
            "between 64 and 1048576",
        )?;
        range(self.max_connections >= 1, "max_connections", "at least 1")?;
        range(self.max_rooms >= 1, "max_rooms", "at least 1")?;
        range(
            (1..=100_000).contains(&self.history_size),
            "history_size",
            "between 1 and 100000",
        )?;
        range(self.history_default >= 1, "history_default", "at least 1")?;
        range(
            (1..=10_000).contains(&self.history_page),
            "history_page",
            "between 1 and 10000",
        )?;
        range(
            self.history_bytes >= 1 << 16,
            "history_bytes",
            "at least 65536",
        )?;
        range(
            self.max_outbound_bytes >= self.max_line_bytes * 4,
            "max_outbound_bytes",
            "at least four times max_line_bytes",
        )?;
        let bounds = &self.limits;
        range(
            bounds.rooms_per_connection >= 1
                && bounds.rooms_per_ip >= 1
                && bounds.rooms_joined >= 1
                && bounds.bans_per_room >= 1
                && bounds.mutes_per_room >= 1
                && bounds.invites_per_room >= 1
                && bounds.server_bans >= 1,
            "limits.rooms_per_connection, rooms_per_ip, rooms_joined, bans_per_room, mutes_per_room, invites_per_room and server_bans",
            "at least 1",
        )?;
        range(
            (1..=10_000).contains(&bounds.list_page),
            "limits.list_page",
            "between 1 and 10000",
        )?;
        range(
            (1..=1_000).contains(&bounds.search_results),
            "limits.search_results",
            "between 1 and 1000",
        )?;
        range(
            (1..=128).contains(&bounds.ipv6_prefix),
            "limits.ipv6_prefix",
            "between 1 and 128",
        )?;
        let limits = &self.rate_limit;
        range(
            [
                limits.window,
                limits.ip_window,
                self.idle.ping_after,
                self.idle.timeout,
            ]
            .iter()
            .all(|d| *d <= crate::duration::MAX),
            "rate_limit.window, rate_limit.ip_window, idle.ping_after and idle.timeout",
            "at most 3650d",
        )?;
        range(
            !limits.enabled || (limits.messages >= 1 && limits.ip_messages >= 1),
            "rate_limit.messages and rate_limit.ip_messages",
            "at least 1 while rate limiting is enabled",
        )?;
        range(
            !limits.enabled || (!limits.window.is_zero() && !limits.ip_window.is_zero()),
            "rate_limit.window and rate_limit.ip_window",
            "longer than zero while rate limiting is enabled",
        )?;
        range(
            !self.idle.enabled || (!self.idle.ping_after.is_zero() && !self.idle.timeout.is_zero()),
            "idle.ping_after and idle.timeout",
            "longer than zero while idle checks are enabled",
        )?;
        self.operator_login.validate()?;
        self.accounts.validate()?;
        self.irc.validate()?;
        let mut seen = std::collections::BTreeSet::new();
        for operator in &self.operators {
            Nick::parse(&operator.name).map_err(|source| ConfigError::BadOperatorName {
                name: operator.name.clone(),
                source,
            })?;
            PasswordHash::new(&operator.password_hash).map_err(|error| {
                ConfigError::BadPasswordHash {
                    name: operator.name.clone(),
                    reason: error.to_string(),
                }
            })?;
            if !seen.insert(operator.name.to_ascii_lowercase()) {
                return Err(ConfigError::DuplicateOperator(operator.name.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn tiny_line_limit_is_refused() {
        let config = Config {
            max_line_bytes: 10,
            ..Config::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::OutOfRange {
                setting: "max_line_bytes",
                ..
            })
        ));
    }

    #[test]
    fn plain_text_password_is_refused() {
        let config = Config {
            operators: vec![OperatorConfig {
                name: "admin".into(),
                password_hash: "hunter2".into(),
            }],
            ..Config::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::BadPasswordHash { .. })
        ));
    }
}
