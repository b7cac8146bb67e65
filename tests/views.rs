//! Every console view rendered from a fixed snapshot at a fixed time, at 80x24 and 120x40,
//! compared with the committed pictures (`tests/snapshots/`, reviewed with `cargo insta review`).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ember::tui::keymap::Keymap;
use ember::tui::state::{App, Mode, View};
use ember::tui::theme::Theme;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[path = "fixture/mod.rs"]
mod fixture;
use fixture::*;

#[test]
fn every_view_at_80x24_and_120x40() {
    for view in [
        View::Overview,
        View::Services,
        View::Volumes,
        View::Jobs,
        View::Backups,
    ] {
        let a = app(view);
        for (w, h) in [(80, 24), (120, 40)] {
            insta::assert_snapshot!(format!("{}_{w}x{h}", view.name()), render(&a, w, h));
        }
    }
}

#[test]
fn volume_detail_filter_help_and_prompts() {
    let mut a = app(View::Volumes);
    a.selected = [0; View::ALL.len()]; // rows sorted by name: db-clone first, a clone with a parent
    a.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    insta::assert_snapshot!("volumes_detail_120x40", render(&a, 120, 40));

    let mut a = app(View::Volumes);
    a.handle_key(key('/'));
    for c in "status:err".chars() {
        a.handle_key(key(c));
    }
    assert_eq!(
        a.visible.len(),
        1,
        "status:err keeps only the volume in error"
    );
    insta::assert_snapshot!("volumes_filter_80x24", render(&a, 80, 24));
    // Typed one key at a time (through `st`, a name match, into `status:`, a field), the
    // rows must equal the filter applied at once.
    let mut b = app(View::Volumes);
    b.handle_key(key('/'));
    for c in "status:err".chars() {
        b.handle_key(key(c));
    }
    let once = ember::tui::state::filter_sort(&b.snap, "status:err", b.sort, b.sort_desc);
    assert_eq!(
        b.visible, once,
        "narrowing keystroke by keystroke gives the same rows"
    );
    assert_eq!(b.visible, a.visible);

    let mut a = app(View::Volumes);
    a.handle_key(key('d'));
    assert!(matches!(a.mode, Mode::Prompt(_)));
    insta::assert_snapshot!("volumes_delete_prompt_80x24", render(&a, 80, 24));

    let mut a = app(View::Jobs);
    a.handle_key(key('?'));
    insta::assert_snapshot!("jobs_help_80x24", render(&a, 80, 24));

    // Migrate: prefilled with another backend than the volume's, sent as typed.
    let mut a = app(View::Volumes);
    a.selected = [0; View::ALL.len()];
    let v = a.selected_volume().unwrap().clone();
    a.handle_key(key('m'));
    let Mode::Prompt(p) = &a.mode else {
        panic!("m opens no prompt")
    };
    let offered = p.fields[0].1.clone();
    assert!(!offered.is_empty() && offered != *v.backend, "{offered}");
    let shown = render(&a, 120, 40);
    assert!(
        shown.contains("Migrate") && shown.contains("with its clones"),
        "{shown}"
    );
    let sent = a.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(
        sent,
        Some(ember::tui::state::Command::Submit(
            ember::service::jobs::Request::Migrate {
                volume: v.id.to_string(),
                to: offered,
                with_clones: false,
            }
        ))
    );
}

/// What the storage said of the selected volume: a guest's client and ember's own job.
fn open_by_a_guest(a: &mut App) {
    use ember::driver::Holder;
    let id = a.selected_volume().unwrap().id.to_string();
    let holder = |client: &str, addr: &str, host: &str, ember: bool| Holder {
        client: client.into(),
        address: addr.into(),
        how: "watcher".into(),
        cookie: None,
        host: Some(host.into()),
        ember,
    };
    let seen = ember::service::inspect::Inspection {
        holders: vec![
            holder("client.4242", "10.0.0.12:0/3125087", "compute-07", false),
            holder("client.4107", "10.0.0.5:0/2219", "storage-01", true),
            Holder {
                how: "lock".into(),
                cookie: Some("backup-job".into()),
                ..holder("client.5120", "10.0.0.31:0/77", "backup-02", false)
            },
        ],
        check: format!("rbd status volumes/volume-{id}"),
        used_bytes: Some(3 << 30),
    };
    a.set_holders(id, NOW, Ok(seen));
}

#[test]
fn who_has_it_open_why_it_failed_and_the_forced_delete() {
    let enter = KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE);
    // The detail pane names who has it open (and marks ember's own), and what it uses.
    let mut a = app(View::Volumes);
    a.selected = [0; View::ALL.len()];
    a.handle_key(enter);
    open_by_a_guest(&mut a);
    let shown = render(&a, 120, 40);
    assert!(
        shown.contains("client.4242 at 10.0.0.12:0/3125087") && shown.contains("compute-07"),
        "{shown}"
    );
    insta::assert_snapshot!("volumes_detail_open_120x40", shown);

    // Delete asks for the name, then FORCE, naming the guest (not ember's own job).
    a.handle_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    a.handle_key(key('d'));
    let shown = render(&a, 120, 40);
    assert!(
        shown.contains("It is OPEN") && shown.contains("by client.4242"),
        "{shown}"
    );
    assert!(
        !shown.contains("client.4107"),
        "ember's own client is not a reason to refuse"
    );
    insta::assert_snapshot!("volumes_delete_open_prompt_120x40", shown);
    let name = a.selected_volume().unwrap().name.to_string();
    for c in name.chars() {
        a.handle_key(key(c));
    }
    assert_eq!(a.handle_key(enter), None, "no FORCE typed: refused");
    a.handle_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
    for c in "FORCE".chars() {
        a.handle_key(key(c));
    }
    let sent = a.handle_key(enter);
    assert!(
        matches!(
            &sent,
            Some(ember::tui::state::Command::Submit(
                ember::service::jobs::Request::Delete { force: true, .. }
            ))
        ),
        "{sent:?}"
    );

    // Break-lock offers the stale locker, wants BREAK; unmanage wants the name.
    let mut a = app(View::Volumes);
    a.selected = [0; View::ALL.len()];
    a.handle_key(enter);
    open_by_a_guest(&mut a);
    a.handle_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    a.handle_key(key('b'));
    assert_eq!(a.handle_key(enter), None, "BREAK not typed");
    a.handle_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
    for c in "BREAK".chars() {
        a.handle_key(key(c));
    }
    assert_eq!(
        a.handle_key(enter),
        Some(ember::tui::state::Command::BreakLock {
            volume: "00000003-0000-4000-8000-000000000000".into(),
            locker: "client.5120".into(),
        })
    );
    a.handle_key(KeyEvent::new(KeyCode::Char('U'), KeyModifiers::SHIFT));
    for c in "db-clone".chars() {
        a.handle_key(key(c));
    }
    assert_eq!(
        a.handle_key(enter),
        Some(ember::tui::state::Command::Unmanage(
            "00000003-0000-4000-8000-000000000000".into()
        ))
    );
    // `:manage BACKEND IMAGE NAME`.
    a.handle_key(key(':'));
    for c in "manage file0 legacy.img legacy".chars() {
        a.handle_key(key(c));
    }
    assert_eq!(
        a.handle_key(enter),
        Some(ember::tui::state::Command::Manage {
            backend: "file0".into(),
            image: "legacy.img".into(),
            name: "legacy".into(),
        })
    );

    // A volume in error says why and which command fixes it.
    let mut a = app(View::Volumes);
    a.handle_key(key('/'));
    for c in "status:err".chars() {
        a.handle_key(key(c));
    }
    a.handle_key(enter);
    a.handle_key(enter);
    let shown = render(&a, 120, 40);
    assert!(shown.contains("why:") && shown.contains("fix:"), "{shown}");
    insta::assert_snapshot!("volumes_detail_error_120x40", shown);
}

#[test]
fn read_only_hides_every_mutating_key_and_says_so() {
    let mut a = App::new(
        Keymap::default_map(),
        Theme::monochrome(),
        true,
        false,
        "storage-01".into(),
    );
    a.set_snapshot(Arc::new(fixture()));
    a.view = View::Volumes;
    for c in ['n', 's', 'c', 'f', 'e', 'd'] {
        assert_eq!(a.handle_key(key(c)), None);
        assert_eq!(
            a.mode,
            Mode::Normal,
            "{c} opened something in read-only mode"
        );
    }
    let screen = render(&a, 120, 40);
    assert!(screen.contains("READ-ONLY"));
    assert!(
        !screen.contains("delete"),
        "no delete hint in read-only mode"
    );
}

/// A viewer's login says why the console is read-only; a database that stopped answering is
/// in the title bar with the time it went away.
#[test]
fn the_title_says_why_it_is_read_only_and_since_when_the_database_is_away() {
    let mut a = App::new(
        Keymap::default_map(),
        Theme::monochrome(),
        true,
        false,
        "storage-01".into(),
    );
    a.read_only_reason = Some("connected as alice (ember_viewer), which may only read".into());
    let mut snap = fixture();
    snap.error = Some("database query failed: connection refused".into());
    snap.error_since = Some(NOW - 45_000);
    a.set_snapshot(Arc::new(snap));
    let screen = render(&a, 240, 24);
    assert!(
        screen.contains("READ-ONLY: connected as alice (ember_viewer), which may only read"),
        "{screen}"
    );
    assert!(screen.contains("DATABASE UNREACHABLE since"), "{screen}");
    assert!(screen.contains("(45s ago)"), "{screen}");
}

/// Random keys never panic, and the selection always stays in bounds.
#[test]
fn random_keys_never_panic_and_keep_selection_in_bounds() {
    let keys: Vec<KeyEvent> = "jkgG/abc123456789:qdnsfexo?"
        .chars()
        .map(key)
        .chain(
            [
                KeyCode::Esc,
                KeyCode::Enter,
                KeyCode::Tab,
                KeyCode::Backspace,
                KeyCode::PageDown,
                KeyCode::PageUp,
                KeyCode::Up,
                KeyCode::Down,
            ]
            .map(|c| KeyEvent::new(c, KeyModifiers::NONE)),
        )
        .collect();
    let mut a = app(View::Overview);
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let k = keys[(seed % keys.len() as u64) as usize];
        let _ = a.handle_key(k);
        if a.quit {
            a.quit = false;
        }
        for v in View::ALL {
            let n = a.rows(v);
            assert!(
                n == 0 || a.selection(v) < n,
                "{v:?}: selection {} of {n}",
                a.selection(v)
            );
        }
    }
    let _ = render(&a, 80, 24);
}

fn check(
    scope: &str,
    name: &'static str,
    status: ember::doctor::Status,
    summary: &str,
    fix: Option<&str>,
    order: (usize, usize),
) -> ember::doctor::Check {
    ember::doctor::Check {
        id: format!("{scope}.{name}"),
        scope: scope.into(),
        check: name.into(),
        status,
        summary: summary.into(),
        evidence: vec![format!("evidence of {name}")],
        fix: fix.map(String::from),
        took_ms: 3,
        order,
    }
}

#[test]
fn doctor_findings_in_the_doctor_view_and_on_the_overview() {
    use ember::doctor::Status::*;
    let mut a = app(View::Doctor);
    assert_eq!(a.doctor.start(), Some(ember::tui::state::Command::Doctor));
    assert_eq!(a.doctor.start(), None, "one run at a time");
    // Arriving out of order, they are shown in the stable order.
    a.doctor.add(check("rbd0", "keyring", Fail, "no keyring for client.cinder-x (looked in /etc/ceph/ceph.client.cinder-x.keyring)",
        Some("/etc/ceph/ceph.client.cinder.keyring holds client.cinder, not client.cinder-x: set rbd_user = cinder"), (1, 2)));
    a.doctor.add(check(
        "ember",
        "config",
        Ok,
        "/etc/ember/ember.toml: 2 backend(s)",
        None,
        (0, 0),
    ));
    a.doctor.add(check(
        "rbd0",
        "monitors",
        Ok,
        "3 of 3 monitor addresses reachable",
        None,
        (1, 1),
    ));
    a.doctor.add(check(
        "rbd0",
        "health",
        Warn,
        "HEALTH_WARN: 1 osds down",
        Some("see `ceph health detail`"),
        (1, 4),
    ));
    // Ceph's own health checks: one that stops this backend's writes, and another pool's
    // condition, shown once under the cluster as information.
    a.doctor.add(check(
        "rbd0",
        "POOL_FULL",
        Fail,
        "pool volumes is full (quota 20 MiB): writes to the pool are refused",
        Some("raise or clear the quota (ceph osd pool set-quota volumes max_bytes N)"),
        (1, 5),
    ));
    a.doctor.add(check(
        "ceph-6c10f83f",
        "POOL_FULL",
        Info,
        "pool backups is full (running out of quota)",
        Some("ceph osd pool set-quota backups max_objects N"),
        (10_000, 0),
    ));
    a.doctor.finish(NOW - 5_000);
    let order: Vec<&str> = a.doctor.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        order,
        [
            "ember.config",
            "rbd0.monitors",
            "rbd0.keyring",
            "rbd0.health",
            "rbd0.POOL_FULL",
            "ceph-6c10f83f.POOL_FULL"
        ]
    );
    a.selected[5] = 2;
    for (w, h) in [(80, 24), (120, 40)] {
        insta::assert_snapshot!(format!("doctor_{w}x{h}"), render(&a, w, h));
    }
    // The first screen shows the failure's cause and fix without navigating.
    a.view = View::Overview;
    let text = render(&a, 120, 40);
    assert!(
        text.contains("FAIL rbd0 keyring: no keyring for client.cinder-x"),
        "{text}"
    );
    assert!(text.contains("→ fix:"), "{text}");
    assert!(
        text.contains("holds client.cinder, not client.cinder-x: set rbd_user = cinder"),
        "{text}"
    );
    assert!(text.contains("doctor: 1 warning(s)"), "{text}");
    // A Ceph check that stops this backend's writes is on the first screen too; another
    // pool's (information) is not.
    assert!(
        text.contains("FAIL rbd0 POOL_FULL: pool volumes is full (quota 20 MiB)"),
        "{text}"
    );
    assert!(!text.contains("pool backups"), "{text}");
    // A re-run replaces results in place.
    a.doctor.start();
    a.doctor.add(check(
        "rbd0",
        "keyring",
        Ok,
        "/etc/ceph/ceph.client.cinder-x.keyring holds client.cinder-x",
        None,
        (1, 2),
    ));
    a.doctor.finish(NOW);
    assert_eq!(a.doctor.checks.len(), 6);
    assert!(!render(&a, 120, 40).contains("FAIL rbd0 keyring"));
}

/// A draining backend on the Overview: what its evacuation has left (volumes, bytes), what
/// moves and how fast, and when it ends; and the command when nothing moves.
#[test]
fn an_evacuation_on_the_overview_says_what_is_left_and_when_it_ends() {
    let mut a = app(View::Overview);
    let mut snap = (*a.snap).clone();
    snap.backends[0].draining = true;
    a.snap = Arc::new(snap.clone());
    let idle = render(&a, 120, 40);
    assert!(
        idle.contains("draining:") && idle.contains("nothing moves: ember backend evacuate file0"),
        "{idle}"
    );
    let mut jobs = (*snap.jobs).clone();
    // Its volume (12 GiB) copied and half read back: 18 of the bar's 24 GiB (each state
    // counts twice), in the 99 s since it started.
    jobs.push(named(
        job("m1", "migrate", "running", 18 << 30, 24 << 30, None),
        "db-data",
    ));
    snap.jobs = Arc::new(jobs);
    a.snap = Arc::new(snap);
    let moving = render(&a, 120, 40);
    let line = moving
        .lines()
        .find(|l| l.contains("draining:"))
        .unwrap_or_else(|| panic!("{moving}"));
    assert!(
        line.contains("volume(s)") && line.contains("1 moving at") && line.contains("eta"),
        "{line}"
    );
    assert!(!line.contains("nothing moves"), "{line}");
    // In the volume's bytes: 9 GiB of it done, at 9 GiB / 99 s (not the bar's 18 GiB).
    // 81 GiB on file0, 9 done: 72 GiB at 9 GiB / 99 s is 792 s (the bar's figures gave 5m).
    assert!(
        line.contains("moving at 93.1 MiB/s") && line.contains("eta 13m"),
        "{line}"
    );
}
