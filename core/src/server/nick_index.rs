//! Which connection holds each nickname, case folded: the index that
//! keeps nicknames unique.
//!
//! Every connection holds a nickname, so the index is per-connection
//! memory. A map from folded nickname to connection copies the 25-byte
//! nickname into each entry: about 67 bytes per connection with the
//! table's spare room. This table keeps only the connection's id and asks
//! the session for the nickname when it must compare or rehash: about 15
//! bytes (ARCHITECTURE.md, decision 75).

use ahash::RandomState;
use hashbrown::HashTable;

use crate::ids::{ConnId, Nick};

/// Connections by folded nickname, holding ids only.
#[derive(Default)]
pub(crate) struct NickIndex {
    table: HashTable<ConnId>,
    hasher: RandomState,
}

impl std::fmt::Debug for NickIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NickIndex")
            .field("len", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl NickIndex {
    /// Records that `conn` holds `folded`. `folded_nick_of` names the
    /// folded nickname of every connection already indexed: a growing
    /// table rehashes them.
    pub(crate) fn insert(
        &mut self,
        folded: &Nick,
        conn: ConnId,
        folded_nick_of: impl Fn(ConnId) -> Option<Nick>,
    ) {
        let hash = nick_hash(&self.hasher, Some(folded));
        let hasher = &self.hasher;
        self.table.insert_unique(hash, conn, |&held| {
            nick_hash(hasher, folded_nick_of(held).as_ref())
        });
    }

    /// Forgets that `conn` holds `folded`.
    pub(crate) fn remove(&mut self, folded: &Nick, conn: ConnId) {
        let hash = nick_hash(&self.hasher, Some(folded));
        if let Ok(entry) = self.table.find_entry(hash, |&held| held == conn) {
            entry.remove();
        }
    }

    /// The connection holding `folded`; `folded_nick_of` as for
    /// [`NickIndex::insert`].
    pub(crate) fn holder(
        &self,
        folded: &Nick,
        folded_nick_of: impl Fn(ConnId) -> Option<Nick>,
    ) -> Option<ConnId> {
        let hash = nick_hash(&self.hasher, Some(folded));
        self.table
            .find(hash, |&held| folded_nick_of(held).as_ref() == Some(folded))
            .copied()
    }

    /// How many nicknames are held.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Forgets every nickname.
    pub(crate) fn clear(&mut self) {
        self.table.clear();
    }
}

/// A nickname's hash. Rehashing looks nicknames up by connection, so the
/// hash is of an `Option`: a connection without a session (which the
/// server's invariants rule out) hashes apart from every name instead of
/// failing.
fn nick_hash(hasher: &RandomState, folded: Option<&Nick>) -> u64 {
    hasher.hash_one(folded)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn nick(text: &str) -> Nick {
        Nick::parse(text).unwrap().folded()
    }

    #[test]
    fn finds_holders_through_growth_renames_and_removals() {
        let mut held: BTreeMap<ConnId, Nick> = BTreeMap::new();
        let mut index = NickIndex::default();
        // Enough to make the table grow several times, rehashing through
        // the held nicknames.
        for n in 0..500 {
            let conn = ConnId::new(n);
            let name = nick(&format!("user{n}"));
            index.insert(&name, conn, |c| held.get(&c).copied());
            held.insert(conn, name);
        }
        let lookup = |index: &NickIndex, held: &BTreeMap<ConnId, Nick>, name: &str| {
            index.holder(&nick(name), |c| held.get(&c).copied())
        };
        for n in 0..500 {
            assert_eq!(
                lookup(&index, &held, &format!("USER{n}")),
                Some(ConnId::new(n))
            );
        }
        assert_eq!(lookup(&index, &held, "user500"), None);
        // A rename: the old name is free, the new one found.
        let conn = ConnId::new(7);
        index.remove(&nick("user7"), conn);
        held.insert(conn, nick("seven"));
        index.insert(&nick("seven"), conn, |c| held.get(&c).copied());
        assert_eq!(lookup(&index, &held, "user7"), None);
        assert_eq!(lookup(&index, &held, "Seven"), Some(conn));
        // Removing names the connection: another's entry stays.
        index.remove(&nick("user8"), ConnId::new(9));
        assert_eq!(lookup(&index, &held, "user8"), Some(ConnId::new(8)));
        index.remove(&nick("user8"), ConnId::new(8));
        held.remove(&ConnId::new(8));
        assert_eq!(lookup(&index, &held, "user8"), None);
        assert_eq!(index.len(), 499);
        index.clear();
        assert_eq!(index.len(), 0);
    }
}
