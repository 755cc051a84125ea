//! Presence answers and the events that pass them. The server reads a room's members
//! after the `presence` request arrives, and a `join` or `leave` published meanwhile can
//! reach the client before the answer does while the answer does not show it (on NATS
//! the read and the event take different paths). Such events are newer than the answer,
//! so they are applied over it: the list agrees with the events already delivered.

use switchyard_protocol::frame::Member;

/// A `join` (true) or `leave` (false) of a user.
pub(crate) type Change = (String, bool);

/// `members` with `changes` applied in order: a joined user is listed (with one
/// connection, unless listed already), a user who left is not.
pub(crate) fn apply_changes(mut members: Vec<Member>, changes: &[Change]) -> Vec<Member> {
    for (user, present) in changes {
        let at = members.iter().position(|m| &m.user == user);
        match (present, at) {
            (true, None) => members.push(Member {
                user: user.clone(),
                conns: 1,
            }),
            (false, Some(at)) => {
                members.remove(at);
            }
            _ => {}
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(user: &str, conns: u32) -> Member {
        Member {
            user: user.into(),
            conns,
        }
    }

    #[test]
    fn joins_and_leaves_apply_in_order_over_the_answer() {
        let answer = vec![member("alice", 2), member("carol", 1)];
        let changes = [
            ("bob".to_string(), true),
            ("carol".to_string(), false),
            ("alice".to_string(), true),
            ("dave".to_string(), true),
            ("dave".to_string(), false),
        ];
        assert_eq!(
            apply_changes(answer, &changes),
            vec![member("alice", 2), member("bob", 1)]
        );
    }
}
