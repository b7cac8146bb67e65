//! The console's own copy of recent log lines, for the Logs view's `/` filter: tui-logger's
//! widget filters by target and level only, so a filtered view is drawn from this book. A
//! tracing layer beside tui-logger's fills it; it keeps the newest [`KEPT`] lines.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// Lines kept (the same depth as tui-logger's buffer).
pub const KEPT: usize = 10_000;

/// One log line as the view draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub at_ms: i64,
    pub level: tracing::Level,
    /// The target's last segment (`runner`).
    pub target: String,
    /// Fields then message, as tui-logger writes them (`backend: file0 job: 1a2b3c4d ...`).
    pub text: String,
}

fn book() -> &'static Mutex<VecDeque<Entry>> {
    static BOOK: OnceLock<Mutex<VecDeque<Entry>>> = OnceLock::new();
    BOOK.get_or_init(|| Mutex::new(VecDeque::with_capacity(1024)))
}

/// Adds a line (the layer does; tests may too).
pub fn record(e: Entry) {
    let mut b = book().lock().unwrap_or_else(|p| p.into_inner());
    if b.len() >= KEPT {
        b.pop_front();
    }
    b.push_back(e);
}

/// The lines whose text, target or level contain every word of `filter` (any case), oldest
/// first, and how many lines the book holds.
pub fn matching(filter: &str) -> (Vec<Entry>, usize) {
    let words = super::filter::filter_words(filter);
    let b = book().lock().unwrap_or_else(|p| p.into_inner());
    let hits = b
        .iter()
        .filter(|e| {
            words.iter().all(|w| {
                super::filter::contains_ci(&e.text, w)
                    || super::filter::contains_ci(&e.target, w)
                    || e.level.as_str().eq_ignore_ascii_case(w)
            })
        })
        .cloned()
        .collect();
    (hits, b.len())
}

/// The layer to add to the console's subscriber.
pub struct LogBookLayer;

#[derive(Default)]
struct Text {
    fields: String,
    message: String,
}

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, "{}: {value:?} ", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, "{}: {value} ", field.name());
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for LogBookLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut t = Text::default();
        event.record(&mut t);
        let meta = event.metadata();
        record(Entry {
            at_ms: crate::db::now_ms(),
            level: *meta.level(),
            target: super::logline::short_target(meta.target()),
            text: format!("{}{}", t.fields, t.message),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_keeps_lines_with_every_word() {
        for (t, text) in [
            (
                "runner",
                "backend: file0 job: 1a2b3c4d flatten of db-01 succeeded",
            ),
            (
                "runner",
                "backend: rbd0 job: 5e6f7a8b delete of web failed: busy",
            ),
            ("backend", "backend: rbd0 service started"),
        ] {
            record(Entry {
                at_ms: 0,
                level: tracing::Level::INFO,
                target: t.into(),
                text: text.into(),
            });
        }
        let (hits, _) = matching("rbd0 RUNNER");
        assert_eq!(hits.len(), 1);
        assert!(hits[0].text.contains("delete of web"));
        assert_eq!(matching("db-01").0.len(), 1);
        assert!(matching("nothing-like-this").0.is_empty());
    }
}
