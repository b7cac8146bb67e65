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
        Some(("kind", k)) => contains_ci(&e.kind, k),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(actor: &str, kind: &str, target: &str, message: &str) -> EventView {
        EventView {
            id: 1,
            at: 0,
            actor: actor.into(),
            host: Some("storage-01".into()),
            kind: kind.into(),
            target: Some("0f0f".into()),
            target_name: Some(target.into()),
            message: message.into(),
        }
    }

    #[test]
    fn fields_and_words_narrow_the_log() {
        let e = ev(
            "alice (ssh from 10.0.0.7)",
            "state_reset",
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
