//! End to end, as an operator sees it: the real binary in a real terminal (tmux). Open the
//! console (it is the worker), filter volumes, start a flatten, watch it finish in Jobs, see
//! the log line, quit, and find the terminal restored. Runs when EMBER_E2E=1 (scripts/test.sh
//! sets it and installs tmux); otherwise it says it skipped.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

struct Tmux {
    session: String,
}

impl Tmux {
    fn start(cmd: &str) -> Tmux {
        // Unique per test: the tests of this file run in parallel.
        let session = format!("ember-e2e-{}", uuid::Uuid::new_v4().simple());
        let st = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                "120",
                "-y",
                "36",
                cmd,
            ])
            .status()
            .unwrap();
        assert!(st.success(), "tmux new-session");
        Tmux { session }
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let st = Command::new("tmux")
                .args(["send-keys", "-t", &self.session, k])
                .status()
                .unwrap();
            assert!(st.success());
            // Space keys out: a terminal reads ESC followed at once by a letter as Alt+letter.
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn text(&self, text: &str) {
        let st = Command::new("tmux")
            .args(["send-keys", "-t", &self.session, "-l", text])
            .status()
            .unwrap();
        assert!(st.success());
        std::thread::sleep(Duration::from_millis(150));
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alternate_screen(&self) -> bool {
        let out = Command::new("tmux")
            .args(["display", "-p", "-t", &self.session, "#{alternate_on}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    /// Waits until the screen shows `what`; on a timeout, fails with the last screen.
    fn wait_for(&self, what: &str, secs: u64, f: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if f(&s) {
                return s;
            }
            if std::time::Instant::now() > deadline {
                panic!("timed out after {secs} s waiting for {what}; the screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

/// The console (the worker) on a fresh SQLite database with `backends`, in tmux; None (and a
/// notice) unless EMBER_E2E=1. When it exits, the pane says CONSOLE-EXITED-<code>.
fn console_on_sqlite(backends: &str) -> Option<(tempfile::TempDir, Env, Tmux)> {
    if std::env::var_os("EMBER_E2E").is_none() {
        eprintln!(
            "NOTICE: end-to-end console test skipped: set EMBER_E2E=1 (scripts/test.sh does)"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(dir.path(), &url, backends);
    let cmd = format!(
        "{EMBER} --config {} --database-url {url}; echo CONSOLE-EXITED-$?; sleep 60",
        env.config.display()
    );
    let tmux = Tmux::start(&cmd);
    Some((dir, env, tmux))
}

#[test]
fn operator_session_in_a_real_terminal() {
    let Some((_dir, env, tmux)) = console_on_sqlite(
        "[backends.file0]\nvolume_driver = \"file\"\nvolume_copy_bps_limit = 16777216\n",
    ) else {
        return;
    };
    tmux.wait_for("the console", 20, |s| {
        s.contains("overview") && s.contains("file0") && s.contains("1 up")
    });
    assert!(
        tmux.alternate_screen(),
        "the console uses the alternate screen"
    );

    // Volumes made from the command line; the console's own service runs the jobs.
    env.json(&["volume", "create", "src", "--size", "256M", "--wait"]);
    let s = env.json(&[
        "volume", "snapshot", "create", "s", "--volume", "src", "--wait",
    ]);
    write_at(
        &env.file_dir("file0").join(format!(
            "snapshot-{}",
            s["snapshot"]["id"].as_str().unwrap()
        )),
        0,
        96 << 20,
        7,
    );
    env.json(&["volume", "create", "web-clone", "--snapshot", "s", "--wait"]);
    env.json(&["volume", "create", "other", "--size", "64M", "--wait"]);

    // Volumes view, filtered down to the clone.
    tmux.keys(&["3"]);
    tmux.wait_for("3 volumes", 10, |s| s.contains("volumes 3 of 3"));
    tmux.keys(&["/"]);
    tmux.text("clone");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the filter", 10, |s| {
        s.contains("volumes 1 of 3") && s.contains("filter: clone")
    });
    assert!(
        screen.contains("web-clone") && !screen.contains("other "),
        "{screen}"
    );

    // Its family (xray): the source, its snapshot, the clone under it; esc comes back.
    tmux.keys(&["x"]);
    let screen = tmux.wait_for("the family view", 10, |s| {
        s.contains("family of src") && s.contains("@s") && s.contains("web-clone")
    });
    assert!(screen.contains("clone"), "{screen}");
    tmux.keys(&["Escape"]);
    tmux.wait_for("back in volumes", 10, |s| s.contains("volumes 1 of 3"));

    // Flatten it, confirm, and watch the job in Jobs.
    tmux.keys(&["f"]);
    tmux.wait_for("the flatten prompt", 10, |s| {
        s.contains("Flatten web-clone")
    });
    tmux.keys(&["y"]);
    tmux.wait_for("the job queued toast", 10, |s| s.contains("queued"));
    tmux.keys(&["4"]);
    tmux.wait_for("the running flatten", 20, |s| {
        s.lines()
            .any(|l| l.contains("flatten") && l.contains("running"))
    });
    // Its progress moves on screen several times a second: the embedded worker posts it to
    // the console directly (the database gets one write a second). Sampled for 2 s.
    let pct = |s: &str| -> Option<String> {
        let l = s
            .lines()
            .find(|l| l.contains("flatten") && l.contains("running"))?;
        l.split_whitespace()
            .find(|w| w.ends_with('%'))
            .map(String::from)
    };
    let started = std::time::Instant::now();
    let mut seen: Vec<String> = vec![];
    while started.elapsed() < Duration::from_secs(2) {
        if let Some(p) = pct(&tmux.screen())
            && seen.last() != Some(&p)
        {
            seen.push(p);
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    eprintln!("progress on screen over 2 s: {seen:?}");
    assert!(seen.len() >= 6, "at least 3 updates a second: {seen:?}");

    // Cancel it from the console: the driver stops at once (the job ends cancelled).
    let job = env.json(&["job", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    tmux.keys(&["g", "x"]);
    tmux.wait_for("the cancel prompt", 10, |s| {
        s.contains("Cancel flatten job")
    });
    let asked = std::time::Instant::now();
    tmux.keys(&["y"]);
    let state = wait_for("the job to end", Duration::from_secs(10), || {
        let j = env.json(&["job", "show", &job]);
        (j["state"] != "running").then(|| j["state"].as_str().unwrap().to_string())
    });
    let took = asked.elapsed();
    eprintln!("console cancel to job cancelled: {} ms", took.as_millis());
    assert_eq!(state, "cancelled");
    assert!(took < Duration::from_secs(3), "took {took:?}");

    // Flatten again (it resumes where it stopped, here from the command line) and watch it
    // finish in Jobs.
    env.json(&["volume", "flatten", "web-clone"]);
    tmux.wait_for("the flatten to succeed", 60, |s| {
        s.lines()
            .any(|l| l.contains("flatten") && l.contains("succeeded"))
    });

    // The audit log: the flatten and the cancel, by name; the filter narrows it.
    tmux.keys(&["7"]);
    tmux.wait_for("the events view", 10, |s| {
        s.contains("job_cancel") && s.contains("web-clone")
    });
    tmux.keys(&["/"]);
    tmux.text("kind:cancel");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the filtered events", 10, |s| {
        s.contains("filter: kind:cancel")
    });
    assert!(
        !screen.contains("job_queued"),
        "only the cancel is left:\n{screen}"
    );

    // The log view has the line.
    tmux.keys(&["5"]);
    let s = tmux.wait_for("the log line", 10, |s| {
        s.contains("flatten of web-clone succeeded")
    });
    // Once, with its time, level and target, the job by its short id and the volume by name,
    // on one line.
    let line = s
        .lines()
        .find(|l| l.contains("flatten of web-clone succeeded"))
        .unwrap();
    assert!(line.contains("INFO") && line.contains("runner"), "{line}");
    assert_eq!(line.matches("job").count(), 1, "the job once: {line}");
    // `/` keeps only the lines with every word.
    tmux.keys(&["/"]);
    tmux.text("web-clone cancel");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the filtered log", 10, |s| {
        s.contains("logs matching") && s.contains("flatten of web-clone cancelled")
    });
    assert!(
        !s.contains("flatten of web-clone succeeded"),
        "only lines with both words:\n{s}"
    );
    tmux.keys(&["Escape"]);

    // Quit: the screen is restored and the process ends cleanly.
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("the console to exit", 20, |s| s.contains("CONSOLE-EXITED-"));
    assert!(screen.contains("CONSOLE-EXITED-0"), "{screen}");
    assert!(
        !tmux.alternate_screen(),
        "terminal restored to the normal screen"
    );
    let v = env.volume("web-clone");
    assert!(v["parent"].is_null(), "the flatten really happened: {v}");
}

/// On PostgreSQL an attached console is pushed what another process changed: it is on screen
/// within 2 s, while the console's fallback poll is 15 s (only the push can explain it).
#[test]
fn an_attached_console_on_postgres_shows_another_process_s_change_within_2_s() {
    if std::env::var_os("EMBER_E2E").is_none() {
        eprintln!("NOTICE: end-to-end push test skipped: set EMBER_E2E=1 (scripts/test.sh does)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_db(Engine::Postgres, dir.path()) else {
        return;
    };
    let env = Env::new(
        dir.path(),
        &url,
        "[backends.file0]\nvolume_driver = \"file\"\n",
    );
    env.json(&["volume", "create", "first", "--size", "1G"]);
    let cmd = format!(
        "{EMBER} --config {} --database-url {url} --attach; sleep 60",
        env.config.display()
    );
    let tmux = Tmux::start(&cmd);
    tmux.keys(&["3"]);
    tmux.wait_for("the volume table", 20, |s| s.contains("volumes 1 of 1"));
    // Past the first reads, well before the 15 s fallback poll.
    std::thread::sleep(Duration::from_secs(2));
    let started = std::time::Instant::now();
    env.json(&["volume", "create", "pushed", "--size", "1G"]);
    let written = started.elapsed();
    tmux.wait_for("the pushed change", 2, |s| {
        s.contains("volumes 2 of 2") && s.contains("pushed")
    });
    eprintln!(
        "change on screen {} ms after the writer returned",
        (started.elapsed() - written).as_millis()
    );
}

/// On call, in a real terminal: a volume another process holds open is named in the detail
/// pane (pid and command), the delete asks for FORCE, and the forced delete is audited.
#[test]
fn a_volume_held_open_is_named_and_its_delete_asks_for_force() {
    let Some((_dir, env, tmux)) = console_on_sqlite("[backends.file0]\nvolume_driver = \"file\"\n")
    else {
        return;
    };
    tmux.wait_for("the console", 20, |s| s.contains("1 up"));
    let v = env.json(&["volume", "create", "guest", "--size", "64M", "--wait"]);
    let path = env.image("file0", v["volume"]["id"].as_str().unwrap());
    let holder = Opener::file(&path);
    let pid = format!("pid {}", holder.pid());

    tmux.keys(&["3", "/"]);
    tmux.text("guest");
    tmux.keys(&["Enter"]);
    // The row must be on screen (the console's next refresh) before Enter opens its detail.
    tmux.wait_for("the volume's row", 10, |s| s.contains("64.0 MiB"));
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the holder in the detail pane", 20, |s| s.contains(&pid));
    assert!(s.contains("open file"), "{s}");
    assert!(s.contains("check: fuser -v"), "{s}");

    tmux.keys(&["Escape", "d"]);
    let s = tmux.wait_for("the delete prompt", 10, |s| s.contains("FORCE"));
    assert!(s.contains("It is OPEN"), "{s}");
    tmux.text("guest");
    tmux.keys(&["Enter"]);
    tmux.wait_for("FORCE asked for", 10, |s| s.contains("type FORCE"));
    tmux.keys(&["Tab"]);
    tmux.text("FORCE");
    tmux.keys(&["Enter"]);
    wait_for("the forced delete", Duration::from_secs(30), || {
        (!env.run(&["volume", "show", "guest"]).status.success()).then_some(())
    });
    let events = env.json(&["events", "--limit", "100"]);
    let forced = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "forced_while_open")
        .cloned()
        .unwrap_or_else(|| panic!("no forced_while_open in {events}"));
    assert!(
        forced["message"].as_str().unwrap().contains(&pid),
        "{forced}"
    );
    drop(holder);
    // The console shows the forced delete done, then quits without a question.
    tmux.keys(&["Escape", "4"]);
    tmux.wait_for("the delete in Jobs", 10, |s| {
        s.contains("delete") && s.contains("succeeded") && !s.contains("running")
    });
    tmux.keys(&["q"]);
    tmux.wait_for("the console to exit", 20, |s| {
        s.contains("CONSOLE-EXITED-0")
    });
}
