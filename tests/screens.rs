//! The on-call screens: the Overview in trouble and when all is well, Jobs by name with a
//! job's detail and throughput chart, the clone family, the audit log with its filter, sorting
//! any table, configured columns, and the navigation habits (esc back, `:` history, ctrl-r).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ember::service::view::JobState;
use ember::tui::state::{Command, Mode, View};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[path = "fixture/mod.rs"]
mod fixture;
use fixture::*;

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn typed(a: &mut ember::tui::state::App, text: &str) {
    for c in text.chars() {
        a.handle_key(key(c));
    }
}

#[test]
fn overview_in_trouble_and_when_all_is_well() {
    let a = app(View::Overview);
    for (w, h) in [(80, 24), (120, 40)] {
        let shown = render(&a, w, h);
        for what in [
            "DOWN storage-01@rbd0",
            "LATE storage-02@file0",
            "FAILED delete db-data",
        ] {
            assert!(shown.contains(what), "{what} missing at {w}x{h}:\n{shown}");
        }
        assert!(
            shown.contains("db-clone (file0)") && shown.contains("eta"),
            "{shown}"
        );
        insta::assert_snapshot!(format!("overview_trouble_{w}x{h}"), shown);
    }
    // All well: one green line, then backends, jobs and events as usual.
    let mut snap = fixture();
    snap.services.retain(|s| s.backend == "file0");
    snap.services[1].lateness_ms = vec![1.1, 1.4, 1.2];
    snap.backends.retain(|b| b.name == "file0");
    snap.cluster_events.clear();
    snap.jobs = Arc::new(
        snap.jobs
            .iter()
            .filter(|j| j.state != JobState::Failed)
            .cloned()
            .collect(),
    );
    let mut a = app(View::Overview);
    a.set_snapshot(Arc::new(snap));
    for (w, h) in [(80, 24), (120, 40)] {
        let shown = render(&a, w, h);
        assert!(shown.contains("all well: 2 service(s) up"), "{shown}");
        assert!(!shown.contains("wrong"), "{shown}");
        insta::assert_snapshot!(format!("overview_all_well_{w}x{h}"), shown);
    }
}

#[test]
fn jobs_by_name_with_detail_chart_and_retry() {
    let mut a = app(View::Jobs);
    let shown = render(&a, 120, 40);
    assert!(
        shown.contains("db-clone (file0)") && shown.contains("alice@10.0.0.7"),
        "{shown}"
    );
    assert!(
        !shown.contains("0 B/0 B"),
        "no byte counts for jobs that move none"
    );
    // The running flatten over three snapshots: rate, ETA and a chart of its throughput.
    for (i, done) in [(1, 4_i64 << 30), (2, 5 << 30), (3, 6 << 30)] {
        let mut snap = fixture();
        let mut jobs = (*snap.jobs).clone();
        jobs[0].bytes_done = done;
        jobs[0].updated_at = NOW - 1_000 + i * 10_000;
        snap.jobs = Arc::new(jobs);
        a.set_snapshot(Arc::new(snap));
    }
    a.handle_key(code(KeyCode::Enter));
    let shown = render(&a, 120, 40);
    assert!(shown.contains("throughput, peak"), "{shown}");
    assert!(shown.contains("102.4 MiB/s"), "1 GiB per 10 s:\n{shown}");
    assert!(shown.contains("eta"), "{shown}");
    insta::assert_snapshot!("job_detail_running_120x40", shown);
    // A failed one: the error in full and the command that retries it.
    a.handle_key(code(KeyCode::Esc));
    a.handle_key(key('j'));
    a.handle_key(key('j'));
    a.handle_key(code(KeyCode::Enter));
    let shown = render(&a, 120, 40);
    assert!(
        shown.contains("ember job retry 11111111-bbbb-4000-8000-000000000000"),
        "{shown}"
    );
    assert!(shown.contains("flatten or delete them first"), "{shown}");
    insta::assert_snapshot!("job_detail_failed_120x40", shown);
    insta::assert_snapshot!("job_detail_failed_80x24", render(&a, 80, 24));
}

#[test]
fn the_clone_family_of_a_volume() {
    let mut a = app(View::Volumes);
    // Sorted by name: db-clone, db-clone-2, db-data...
    a.handle_key(key('j'));
    a.handle_key(key('j'));
    assert_eq!(&*a.selected_volume().unwrap().name, "db-data");
    a.handle_key(key('x'));
    assert_eq!(a.view, View::Family);
    let names: Vec<String> = a
        .family
        .iter()
        .map(|m| format!("{}{}", "  ".repeat(m.depth), m.id()[..8].to_owned()))
        .collect();
    assert_eq!(
        names,
        [
            "00000002",       // db-data
            "  5a5a5a5a",     // @db-nightly
            "    00000003",   // db-clone (a flatten running on it)
            "      6b6b6b6b", // @pre-upgrade
            "        00000006"
        ],
    );
    let shown = render(&a, 120, 40);
    assert!(shown.contains("family of db-data"), "{shown}");
    assert!(
        shown.contains("flatten running"),
        "the running job inline:\n{shown}"
    );
    insta::assert_snapshot!("family_120x40", shown);
    insta::assert_snapshot!("family_80x24", render(&a, 80, 24));
    // Opened on a clone deep in the tree, it still starts at the top of the chain.
    a.handle_key(key('G'));
    assert_eq!(&*a.selected_volume().unwrap().name, "db-clone-2");
    a.handle_key(key('x'));
    assert_eq!(a.family.len(), 5);
    assert_eq!(
        &*a.selected_volume().unwrap().name,
        "db-clone-2",
        "cursor on it"
    );
    // The volume keys act on the selected member...
    a.handle_key(key('f'));
    assert!(
        matches!(&a.mode, Mode::Prompt(p) if p.title.contains("Flatten db-clone-2")),
        "{:?}",
        a.mode
    );
    a.handle_key(code(KeyCode::Esc));
    // ...and enter goes to it in the Volumes view, detail open; esc twice comes back.
    a.handle_key(code(KeyCode::Enter));
    assert_eq!(a.view, View::Volumes);
    assert!(a.detail);
    assert_eq!(&*a.selected_volume().unwrap().name, "db-clone-2");
    a.handle_key(code(KeyCode::Esc));
    a.handle_key(code(KeyCode::Esc));
    assert_eq!(a.view, View::Family);
}

#[test]
fn the_audit_log_filters_by_actor_kind_and_target() {
    let mut a = app(View::Overview);
    a.handle_key(key('7'));
    assert_eq!(a.view, View::Events);
    for (w, h) in [(80, 24), (120, 40)] {
        insta::assert_snapshot!(format!("events_{w}x{h}"), render(&a, w, h));
    }
    assert_eq!(a.visible_events().len(), 5);
    a.handle_key(key('/'));
    typed(&mut a, "actor:bob");
    assert_eq!(a.visible_events().len(), 1);
    a.handle_key(code(KeyCode::Enter));
    let shown = render(&a, 120, 40);
    assert!(
        shown.contains("scratch") && !shown.contains("web-root"),
        "{shown}"
    );
    a.handle_key(code(KeyCode::Esc)); // clears the filter
    a.handle_key(key('/'));
    typed(&mut a, "target:db-");
    assert_eq!(a.visible_events().len(), 2, "db-clone and db-data");
    a.handle_key(code(KeyCode::Esc));
    a.handle_key(key('/'));
    typed(&mut a, "kind:forced");
    a.handle_key(code(KeyCode::Enter));
    assert_eq!(a.visible_events().len(), 1);
    insta::assert_snapshot!("events_filtered_120x40", render(&a, 120, 40));
    // The volumes' filter is its own.
    assert!(a.filter.is_empty());
}

#[test]
fn any_table_sorts_by_any_column() {
    let mut a = app(View::Jobs);
    a.handle_key(key('o'));
    assert!(render(&a, 120, 40).contains("target▲"));
    let first = a.selected_job().unwrap().target_name.clone().unwrap();
    assert_eq!(first, "db-clone");
    a.handle_key(KeyEvent::new(KeyCode::Char('O'), KeyModifiers::SHIFT));
    assert!(render(&a, 120, 40).contains("target▼"));
    assert_eq!(
        a.selected_job().unwrap().target_name.as_deref(),
        Some("db-data@db-nightly")
    );
    a.handle_key(key(':'));
    typed(&mut a, "sort state");
    a.handle_key(code(KeyCode::Enter));
    assert!(render(&a, 120, 40).contains("state▲"));
    assert_eq!(a.selected_job().unwrap().state, JobState::Queued);
    a.handle_key(key(':'));
    typed(&mut a, "sort nope");
    a.handle_key(code(KeyCode::Enter));
    let (msg, err) = a.toast.clone().unwrap();
    assert!(
        err && msg.contains("no such column") && msg.contains("target"),
        "{msg}"
    );
    // Services and events too; volumes by size reversed.
    a.handle_key(key('2'));
    a.handle_key(key(':'));
    typed(&mut a, "sort -heartbeat");
    a.handle_key(code(KeyCode::Enter));
    assert!(render(&a, 120, 40).contains("heartbeat▼"));
    a.handle_key(key('3'));
    a.handle_key(key(':'));
    typed(&mut a, "sort -size");
    a.handle_key(code(KeyCode::Enter));
    assert_eq!(
        &*a.selected_volume().unwrap().name,
        "db-clone-2",
        "16 GiB, the largest"
    );
}

#[test]
fn configured_columns_and_narrow_terminals() {
    let mut a = app(View::Volumes);
    let mut cfg = std::collections::BTreeMap::new();
    cfg.insert(
        "volumes".to_string(),
        vec![
            "status".to_string(),
            "name".to_string(),
            "parent".to_string(),
        ],
    );
    a.columns = ember::tui::columns::chosen(&cfg).unwrap();
    let shown = render(&a, 120, 40);
    let header = shown.lines().nth(2).unwrap().to_string();
    let (s, n, p) = (
        header.find("status").unwrap(),
        header.find("name").unwrap(),
        header.find("parent").unwrap(),
    );
    assert!(s < n && n < p, "in the configured order: {header}");
    assert!(
        !header.contains("size") && !header.contains("created"),
        "{header}"
    );
    insta::assert_snapshot!("volumes_configured_columns_120x40", shown);
    // Unconfigured at 80 columns: the optional columns go, name/size/status stay.
    let a = app(View::Volumes);
    let narrow = render(&a, 80, 24);
    let header = narrow.lines().nth(2).unwrap();
    assert!(header.contains("name") && header.contains("size") && header.contains("status"));
    assert!(!header.contains("created"), "{header}");
}

#[test]
fn esc_goes_back_the_command_line_remembers_and_ctrl_r_refreshes() {
    let mut a = app(View::Overview);
    for k in ['3', '4', '7'] {
        a.handle_key(key(k));
    }
    assert_eq!(a.view, View::Events);
    a.handle_key(code(KeyCode::Esc));
    assert_eq!(a.view, View::Jobs);
    a.handle_key(code(KeyCode::Esc));
    assert_eq!(a.view, View::Volumes);
    a.handle_key(code(KeyCode::Esc));
    assert_eq!(a.view, View::Overview);
    a.handle_key(code(KeyCode::Esc));
    assert_eq!(a.view, View::Overview, "the first view stays");
    // `:` history: up shows the last command, again the one before.
    for c in ["jobs", "events"] {
        a.handle_key(key(':'));
        typed(&mut a, c);
        a.handle_key(code(KeyCode::Enter));
    }
    assert_eq!(a.view, View::Events);
    a.handle_key(key(':'));
    a.handle_key(code(KeyCode::Up));
    assert_eq!(a.mode, Mode::Command("events".into()));
    a.handle_key(code(KeyCode::Up));
    assert_eq!(a.mode, Mode::Command("jobs".into()));
    a.handle_key(code(KeyCode::Down));
    assert_eq!(a.mode, Mode::Command("events".into()));
    a.handle_key(code(KeyCode::Up));
    a.handle_key(code(KeyCode::Enter));
    assert_eq!(a.view, View::Jobs);
    // ctrl-r: read the database now.
    let ctrl_r = KeyEvent::new(KeyCode::Char('r'), KeyModifiers::CONTROL);
    assert_eq!(a.handle_key(ctrl_r), Some(Command::Refresh));
    // Help lists the new keys.
    a.handle_key(key('?'));
    let help = render(&a, 120, 40);
    for k in ["ctrl-r", "reverse sort", "events (audit log)"] {
        assert!(help.contains(k), "{k} not in help:\n{help}");
    }
}

#[test]
fn the_mouse_wheel_and_clicks_select_rows() {
    use ratatui::crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let mut a = app(View::Volumes);
    let at = |kind, row| MouseEvent {
        kind,
        column: 10,
        row,
        modifiers: KeyModifiers::NONE,
    };
    assert!(a.mouse(at(MouseEventKind::ScrollDown, 10)));
    assert_eq!(a.selection(View::Volumes), 1);
    // Row 3 of the screen is the table's first row (title bar, border, header above it).
    assert!(a.mouse(at(MouseEventKind::Down(MouseButton::Left), 5)));
    assert_eq!(a.selection(View::Volumes), 2);
    assert!(
        !a.mouse(at(MouseEventKind::Down(MouseButton::Left), 30)),
        "below the rows"
    );
}

#[test]
fn the_log_view_filters_its_lines_by_words() {
    use ember::tui::logbook::{Entry, record};
    for (i, (level, target, text)) in [
        (
            tracing::Level::INFO,
            "runner",
            "backend: file0 job: 1a2b3c4d flatten of db-01 started",
        ),
        (
            tracing::Level::INFO,
            "backend",
            "backend: rbd0 service started",
        ),
        (
            tracing::Level::WARN,
            "runner",
            "backend: file0 job: 1a2b3c4d flatten of db-01 failed: busy",
        ),
        (
            tracing::Level::INFO,
            "runner",
            "backend: file0 job: 5e6f7a8b create of web started",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        record(Entry {
            at_ms: NOW - 60_000 + i as i64 * 1_000,
            level,
            target: target.into(),
            text: text.into(),
        });
    }
    let mut a = app(View::Logs);
    a.handle_key(key('/'));
    typed(&mut a, "db-01");
    a.handle_key(code(KeyCode::Enter));
    let shown = render(&a, 120, 40);
    assert!(shown.contains("logs matching \"db-01\": 2 of"), "{shown}");
    assert!(shown.contains("flatten of db-01 failed: busy") && !shown.contains("create of web"));
    // Each line once: its time, level and target, then the text.
    assert!(
        shown.contains(
            "11:59:02 WARN  runner    backend: file0 job: 1a2b3c4d flatten of db-01 failed"
        ),
        "{shown}"
    );
    insta::assert_snapshot!("logs_filtered_120x40", shown);
    insta::assert_snapshot!("logs_filtered_80x24", render(&a, 80, 24));
    a.handle_key(code(KeyCode::Esc));
    assert!(a.log_filter.is_empty(), "esc clears the filter");
}
