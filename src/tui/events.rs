//! The Events view's filter: words, each `actor:`, `kind:`, `target:` or `host:` on that
//! field, or a plain word found anywhere in the event (its message included).

use crate::service::snapshot::EventView;

use super::filter::contains_ci;

pub fn words(filter: &str) -> Vec<String> {
    super::filter::filter_words(filter)
}

pub fn matches(e: &EventView, words: &[String]) -> bool {
    let target = e
        .target_name
        .as_deref()
        .or(e.target.as_deref())
        .unwrap_or("");
    words.iter().all(|w| match w.split_once(':') {
        Some(("actor", a)) => contains_ci(&e.actor, a),
        Some(("kind", k)) => contains_ci(e.kind.as_str(), k),
        Some(("target", t)) => {
            contains_ci(target, t) || e.target.as_deref().is_some_and(|id| id.starts_with(t))
        }
        Some(("host", h)) => contains_ci(e.host.as_deref().unwrap_or(""), h),
        _ => [
            e.actor.as_str(),
            e.kind.as_str(),
            target,
            e.host.as_deref().unwrap_or(""),
            e.message.as_str(),
        ]
        .iter()
        .any(|f| contains_ci(f, w)),
    })
}

/// A message with every UUID cut to its first 8 characters, as the console shows ids (the
/// audit log keeps them whole; `ember events` prints them so).
pub fn short_ids(msg: &str) -> String {
    let b = msg.as_bytes();
    let is_uuid = |s: &[u8]| {
        s.len() == 36
            && s.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    };
    let mut out = String::with_capacity(msg.len());
    let mut i = 0;
    while i < b.len() {
        if i + 36 <= b.len() && is_uuid(&b[i..i + 36]) {
            out.push_str(&msg[i..i + 8]);
            i += 36;
        } else {
            let ch = msg[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_in_messages_are_cut_to_8() {
        assert_eq!(
            short_ids("flatten job 4a627666-f993-4700-9954-caf000000000 taken over by b@rbd2"),
            "flatten job 4a627666 taken over by b@rbd2"
        );
        assert_eq!(
            short_ids("no ids here: 4a62-7666 é"),
            "no ids here: 4a62-7666 é"
        );
    }

    fn ev(actor: &str, kind: crate::db::EventKind, target: &str, message: &str) -> EventView {
        EventView {
            id: 1,
            at: 0,
            actor: actor.into(),
            host: Some("storage-01".into()),
            kind,
            target: Some("0f0f".into()),
            target_name: Some(target.into()),
            message: message.into(),
        }
    }

    #[test]
    fn fields_and_words_narrow_the_log() {
        let e = ev(
            "alice (ssh from 10.0.0.7)",
            crate::db::EventKind::StateReset,
            "db-01",
            "error -> available",
        );
        assert!(matches(&e, &words("actor:alice kind:state")));
        assert!(matches(&e, &words("target:db-01")));
        assert!(matches(&e, &words("target:0f0")), "an id prefix");
        assert!(matches(&e, &words("10.0.0.7")), "a word anywhere");
        assert!(!matches(&e, &words("actor:bob")));
        assert!(!matches(&e, &words("kind:delete")));
    }
}
