//! A user's connections in a room, as presence keeps them.

use std::collections::HashSet;
use std::sync::Arc;

/// A user's connections in a room on this process (both engines' presence): nearly
/// always one, so a short list (a set's smallest table is about 100 bytes), and a set
/// once there are many (a user id shared by thousands of sockets must not make every
/// join a scan). The ids are the connections' own, shared.
pub(crate) enum Conns {
    Few(Vec<Arc<str>>),
    // Boxed: a set inline (48 bytes) would make every entry's slot 24 bytes larger for
    // the rare user with many connections.
    #[allow(clippy::box_collection)]
    Many(Box<HashSet<Arc<str>>>),
}

/// The most connections kept as a list.
const FEW_CONNS: usize = 8;

impl Conns {
    /// Adds `conn`; false if it was there already.
    pub(crate) fn insert(&mut self, conn: &Arc<str>) -> bool {
        match self {
            Conns::Few(list) if list.contains(conn) => false,
            Conns::Few(list) if list.len() < FEW_CONNS => {
                list.reserve_exact(1);
                list.push(conn.clone());
                true
            }
            Conns::Few(list) => {
                let mut set: HashSet<Arc<str>> = list.drain(..).collect();
                set.insert(conn.clone());
                *self = Conns::Many(Box::new(set));
                true
            }
            Conns::Many(set) => set.insert(conn.clone()),
        }
    }

    /// Takes `conn` out; false if it was not there.
    pub(crate) fn remove(&mut self, conn: &str) -> bool {
        match self {
            Conns::Few(list) => match list.iter().position(|held| **held == *conn) {
                Some(at) => {
                    list.swap_remove(at);
                    true
                }
                None => false,
            },
            Conns::Many(set) => set.remove(conn),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Conns::Few(list) => list.len(),
            Conns::Many(set) => set.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Conns {
    fn default() -> Self {
        Conns::Few(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_connections_is_small() {
        assert_eq!(std::mem::size_of::<Conns>(), 24);
    }

    #[test]
    fn a_users_connections_are_counted_once_each_as_a_list_or_a_set() {
        let mut conns = Conns::Few(Vec::new());
        for i in 0..20 {
            assert!(conns.insert(&format!("c{i}").into()), "c{i} is new");
            assert!(!conns.insert(&format!("c{i}").into()), "c{i} is there");
            assert_eq!(conns.len(), i + 1);
        }
        assert!(matches!(conns, Conns::Many(_)), "20 connections are a set");
        for i in (0..20).rev() {
            assert!(conns.remove(&format!("c{i}")), "c{i} was there");
            assert!(!conns.remove(&format!("c{i}")), "c{i} is gone");
        }
        assert!(conns.is_empty());

        let mut few = Conns::Few(Vec::new());
        assert!(few.insert(&"a".into()) && few.insert(&"b".into()));
        assert!(few.remove("a") && !few.remove("a"));
        assert_eq!(few.len(), 1);
        assert!(matches!(few, Conns::Few(_)));
    }
}
