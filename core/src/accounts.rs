//! Accounts: registered nicknames, each with an Argon2id password hash,
//! and the requests the core makes of its driver to keep them.
//!
//! The core holds every account in memory (they are small and few next to
//! the history) and decides everything about them. Two slow or durable
//! steps are the driver's, asked for through outputs and answered through
//! inputs, as operator password checks are ([`crate::login`]):
//!
//! - hashing a new password ([`crate::Output::HashPassword`], answered by
//!   [`crate::Server::handle_password_hashed`]), since Argon2 takes tens of
//!   milliseconds by design;
//! - making a change durable ([`crate::Output::StoreAccount`], answered by
//!   [`crate::Server::handle_account_stored`]): the client is told its
//!   account changed only once the change is on disk.
//!
//! At start the driver reads the store and hands every account to
//! [`crate::Server::load_accounts`].

use std::time::Duration;

use ahash::{AHashMap, AHashSet};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, in_range};
use crate::duration::serde_human;
use crate::ids::{ConnId, Nick};
use crate::login::{LoginRequest, Password};

/// One registered account. Its name is a nickname, compared folded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The registered nickname, as spelled when it was registered.
    pub name: Nick,
    /// Argon2id PHC string of the password.
    pub password_hash: String,
    /// A server operator (`#oper` is not needed after `#login`).
    #[serde(default)]
    pub operator: bool,
    /// When it was registered, milliseconds since the Unix epoch.
    pub registered_at_ms: u64,
}

/// One change to the account store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AccountChange {
    /// Creates the account, or replaces the one with the same folded name
    /// (a new password, a changed operator flag).
    Put(Account),
    /// Deletes the account with this folded name.
    Remove {
        /// The account's name.
        name: Nick,
    },
}

impl AccountChange {
    /// The account this change is about.
    pub fn name(&self) -> Nick {
        match self {
            Self::Put(account) => account.name,
            Self::Remove { name } => *name,
        }
    }
}

/// A password to hash with Argon2id, from [`crate::Output::HashPassword`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashRequest {
    /// Hand back with the hash.
    pub request: LoginRequest,
    /// What the client typed.
    pub password: Password,
}

/// A change to make durable, from [`crate::Output::StoreAccount`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountWrite {
    /// Hand back with the outcome.
    pub request: LoginRequest,
    /// The change.
    pub change: AccountChange,
}

/// The `[accounts]` table: how registered nicknames are protected and
/// what a password must be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    /// How long someone who takes a registered nickname without being
    /// logged in to it keeps it before being renamed to a guest name.
    #[serde(with = "serde_human")]
    pub nick_grace: Duration,
    /// The shortest password `#register` and `#password` accept, in
    /// characters.
    pub min_password_length: usize,
    /// Accept passwords over unencrypted connections from addresses other
    /// than loopback (off: only TLS or loopback connections may send one).
    pub allow_plaintext_auth: bool,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            nick_grace: Duration::from_secs(30),
            min_password_length: 8,
            allow_plaintext_auth: false,
        }
    }
}

impl AccountsConfig {
    /// Checks that the settings are usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range(
            !self.nick_grace.is_zero() && self.nick_grace <= Duration::from_secs(86_400),
            "accounts.nick_grace",
            "longer than zero and at most 1d",
        )?;
        in_range(
            (1..=MAX_PASSWORD_LENGTH).contains(&self.min_password_length),
            "accounts.min_password_length",
            "between 1 and 256",
        )
    }
}

/// The longest password accepted (a bound on what a client makes the
/// hasher chew on); also the most `min_password_length` may ask for.
pub const MAX_PASSWORD_LENGTH: usize = 256;

/// What a hash or a store in flight is for, by its request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Job {
    /// `#register`: the new password is being hashed.
    Register {
        /// Who registers (may be gone when the answer comes).
        conn: ConnId,
        /// The nickname registered.
        name: Nick,
    },
    /// `#password`: the old password matched, the new one is being hashed.
    NewPassword {
        /// Who changes it.
        conn: ConnId,
        /// The account.
        name: Nick,
    },
    /// A change is being made durable; applied in memory once it is.
    Store {
        /// Who asked, told the outcome.
        conn: ConnId,
        /// The change.
        change: AccountChange,
        /// What to say when it is stored.
        done: Done,
    },
}

/// What a stored change completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    /// `#register`: the registrant is logged in.
    Registered,
    /// `#password`.
    PasswordChanged,
    /// `#unregister`: every connection logged in to it is logged out.
    Unregistered,
    /// `#oper-grant` (true) or `#oper-revoke` (false).
    Operator(bool),
}

/// Every account in memory, and the changes in flight.
#[derive(Debug, Default)]
pub(crate) struct Accounts {
    /// By folded name.
    table: AHashMap<Nick, Account>,
    /// Hashes and stores asked of the driver, by request.
    pub(crate) jobs: AHashMap<LoginRequest, Job>,
    /// Folded names with a change in flight: one at a time per name, so
    /// two registrations of one nickname cannot both succeed.
    pub(crate) changing: AHashSet<Nick>,
    /// What an unknown name's password is checked against: a hash with
    /// the parameters of a stored one, so both cost the same.
    pub(crate) dummy_hash: String,
}

impl Accounts {
    /// No accounts yet; unknown names cost what a default hash costs.
    pub(crate) fn new() -> Self {
        let mut accounts = Self::default();
        accounts.refresh_dummy();
        accounts
    }

    /// Replaces the table with `accounts` (from the driver's store).
    pub(crate) fn load(&mut self, accounts: Vec<Account>) {
        self.table = accounts
            .into_iter()
            .map(|account| (account.name.folded(), account))
            .collect();
        self.refresh_dummy();
    }

    /// The account of a nickname (case ignored).
    pub(crate) fn get(&self, name: &Nick) -> Option<&Account> {
        self.table.get(&name.folded())
    }

    /// Whether a nickname is registered.
    pub(crate) fn is_registered(&self, name: &Nick) -> bool {
        self.table.contains_key(&name.folded())
    }

    /// Applies a change that is now durable.
    pub(crate) fn apply(&mut self, change: &AccountChange) {
        match change {
            AccountChange::Put(account) => {
                let was_empty = self.table.is_empty();
                self.table.insert(account.name.folded(), account.clone());
                if was_empty {
                    self.refresh_dummy();
                }
            }
            AccountChange::Remove { name } => {
                self.table.remove(&name.folded());
            }
        }
    }

    /// How many accounts there are.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    fn refresh_dummy(&mut self) {
        // Any stored hash serves as the template: the store hashes them
        // all with the same parameters.
        let template = self.table.values().next().map(|a| a.password_hash.as_str());
        self.dummy_hash = crate::login::dummy_hash(template);
    }
}
