//! The worker's sessions, found by connection id.
//!
//! A set of the sessions themselves, hashed by their own id: a map from a copy of the
//! id's pointer to the session took 24 bytes a slot, this takes 8, in a table that has
//! a slot for every connection and a quarter to half again as many spare.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::session::Session;

#[derive(Default)]
pub(crate) struct Sessions {
    by_conn: HashSet<ByConn>,
}

/// A session as its connection id: hashed and compared as the id alone.
struct ByConn(Arc<Session>);

impl Hash for ByConn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that a lookup by `&str` finds it.
        (*self.0.conn).hash(state);
    }
}

impl PartialEq for ByConn {
    fn eq(&self, other: &Self) -> bool {
        self.0.conn == other.0.conn
    }
}

impl Eq for ByConn {}

impl Borrow<str> for ByConn {
    fn borrow(&self) -> &str {
        &self.0.conn
    }
}

impl Sessions {
    pub(crate) fn get(&self, conn: &str) -> Option<Arc<Session>> {
        self.by_conn.get(conn).map(|found| found.0.clone())
    }

    /// Adds `session`, replacing one with the same id.
    pub(crate) fn insert(&mut self, session: Arc<Session>) {
        self.by_conn.replace(ByConn(session));
    }

    pub(crate) fn remove(&mut self, conn: &str) {
        self.by_conn.remove(conn);
    }

    pub(crate) fn len(&self) -> usize {
        self.by_conn.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Session>> {
        self.by_conn.iter().map(|found| &found.0)
    }
}
