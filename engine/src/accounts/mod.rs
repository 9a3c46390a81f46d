//! Accounts on disk and off the core's thread: the durable store of
//! registered accounts, Argon2id hashing of new passwords, and the worker
//! thread that does both for the hub.
//!
//! The core decides everything about accounts and keeps them in memory;
//! it asks its driver for the two slow or durable steps
//! ([`chatd_core::Output::HashPassword`],
//! [`chatd_core::Output::StoreAccount`]). The hub hands those to the
//! [`AccountWorker`], which answers with [`crate::hub::Event::PasswordHashed`]
//! and [`crate::hub::Event::AccountStored`]. At start the server reads the
//! [`AccountStore`] and gives every account to the core.

mod hash;
mod store;
mod worker;

#[cfg(test)]
mod crash_tests;

pub use self::hash::hash_password;
pub use self::store::{ACCOUNTS_LOG, AccountStore, AccountStoreError, COMPACTION_TEMP};
pub use self::worker::{AccountWorker, Job, QUEUE_CAPACITY};
