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

use serde::{Deserialize, Serialize};

use crate::ids::Nick;
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
