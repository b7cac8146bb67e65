//! The keymap, shipped as data (`config/keymap.toml`, compiled in). The footer hints and the
//! help overlay are generated from these rows, so they cannot drift from what the keys do.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Deserialize;

use super::action::Action;
use super::state::View;

const DEFAULT: &str = include_str!("../../config/keymap.toml");

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct KeyRow {
    /// `global` or a view name.
    pub view: String,
    pub on: String,
    pub action: Action,
    pub desc: String,
    #[serde(default)]
    pub dangerous: bool,
}

#[derive(Debug, Deserialize)]
struct File {
    keys: Vec<KeyRow>,
}

#[derive(Debug, Clone)]
pub struct Keymap {
    pub rows: Vec<KeyRow>,
}

impl Keymap {
    /// The shipped keymap. It is tested, so a parse failure here is a build defect; it still
    /// degrades to an empty keymap rather than a panic.
    pub fn default_map() -> Keymap {
        let rows = toml::from_str::<File>(DEFAULT)
            .map(|f| f.keys)
            .unwrap_or_default();
        Keymap { rows }
    }

    /// The default keymap with a user's file over it: a user row replaces any default row of
    /// the same view bound to the same key or to the same action (a rebinding).
    pub fn with_overrides(path: &std::path::Path) -> Result<Keymap, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("keymap {}: {e}", path.display()))?;
        let user = toml::from_str::<File>(&text)
            .map_err(|e| format!("keymap {}: {}", path.display(), e.message()))?;
        let mut map = Keymap::default_map();
        for row in user.keys {
            map.rows
                .retain(|d| !(d.view == row.view && (d.on == row.on || d.action == row.action)));
            map.rows.push(row);
        }
        Ok(map)
    }

    /// The action bound to `key` in `view` (view rows first, then global ones).
    pub fn lookup(&self, view: View, key: &KeyEvent, read_only: bool) -> Option<Action> {
        let name = key_name(key)?;
        let find = |v: &str| {
            self.rows
                .iter()
                .find(|r| r.view == v && r.on == name && !(read_only && r.dangerous))
                .map(|r| r.action)
        };
        find(view.name())
            .or_else(|| view.borrows().and_then(|v| find(v.name())))
            .or_else(|| find("global"))
    }

    /// Rows shown for a view: its own, then the global ones (one row per action).
    pub fn hints(&self, view: View, read_only: bool) -> Vec<&KeyRow> {
        let mut out: Vec<&KeyRow> = vec![];
        let borrowed = view.borrows().map_or("", |v| v.name());
        for r in self
            .rows
            .iter()
            .filter(|r| r.view == view.name())
            .chain(self.rows.iter().filter(|r| r.view == borrowed))
            .chain(self.rows.iter().filter(|r| r.view == "global"))
        {
            if read_only && r.dangerous {
                continue;
            }
            if !out.iter().any(|o| o.action == r.action) {
                out.push(r);
            }
        }
        out
    }

    /// Every key bound to an action in a view, for the help overlay ("j, down").
    pub fn keys_for(&self, view: &str, action: Action) -> Vec<&str> {
        self.rows
            .iter()
            .filter(|r| r.view == view && r.action == action)
            .map(|r| r.on.as_str())
            .collect()
    }
}

/// A key as the keymap spells it: a character, or `enter`, `esc`, `up`, `pagedown`...
pub fn key_name(key: &KeyEvent) -> Option<String> {
    if key.modifiers.contains(KeyModifiers::ALT) {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char(c) => Some(format!("ctrl-{}", c.to_ascii_lowercase())),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char(c) => c.to_string(),
        KeyCode::Enter => "enter".into(),
        KeyCode::Esc => "esc".into(),
        KeyCode::Up => "up".into(),
        KeyCode::Down => "down".into(),
        KeyCode::PageUp => "pageup".into(),
        KeyCode::PageDown => "pagedown".into(),
        KeyCode::Home => "g".into(),
        KeyCode::End => "G".into(),
        KeyCode::Tab => "tab".into(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_keymap_parses_binds_every_action_once_per_view() {
        let km = Keymap::default_map();
        assert!(km.rows.len() > 20, "keymap did not parse");
        for r in &km.rows {
            assert!(!r.desc.is_empty(), "{r:?} has no description");
            let same: Vec<_> = km
                .rows
                .iter()
                .filter(|o| o.view == r.view && o.on == r.on)
                .collect();
            assert_eq!(same.len(), 1, "{} bound twice in {}", r.on, r.view);
        }
        for a in Action::user_facing() {
            assert!(km.rows.iter().any(|r| r.action == *a), "{a:?} has no key");
        }
    }

    #[test]
    fn a_user_file_rebinds_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("keys.toml");
        std::fs::write(&p, "[[keys]]\nview = \"volumes\"\non = \"D\"\naction = \"Delete\"\ndesc = \"delete\"\ndangerous = true\n").expect("write");
        let km = Keymap::with_overrides(&p).expect("loads");
        let key = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        assert_eq!(
            km.lookup(View::Volumes, &key('D'), false),
            Some(Action::Delete)
        );
        assert_eq!(
            km.lookup(View::Volumes, &key('d'), false),
            None,
            "the old binding is gone"
        );
        std::fs::write(
            &p,
            "[[keys]]\nview = \"volumes\"\non = \"x\"\naction = \"Nope\"\ndesc = \"?\"\n",
        )
        .expect("write");
        let err = Keymap::with_overrides(&p).expect_err("unknown action");
        assert!(err.contains("keys.toml") && err.contains("Nope"), "{err}");
    }

    #[test]
    fn read_only_hides_dangerous_keys() {
        let km = Keymap::default_map();
        let d = KeyEvent::new(KeyCode::Char('d'), KeyModifiers::NONE);
        assert_eq!(km.lookup(View::Volumes, &d, false), Some(Action::Delete));
        assert_eq!(km.lookup(View::Volumes, &d, true), None);
        assert!(km.hints(View::Volumes, true).iter().all(|r| !r.dangerous));
    }
}
