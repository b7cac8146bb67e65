//! Bad config and bad command-line input: each case must give a clear error naming what and
//! where, a non-zero exit, and never a panic or a hang. Table-driven.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

/// Where the message is expected: errors go to stderr; `config check` reports a disabled
/// backend on stdout (it is data about the file) and exits 1.
#[derive(Clone, Copy, Debug)]
enum On {
    Stderr,
    Stdout,
}

struct Case {
    name: &'static str,
    /// Config file name and text; None to run without one.
    file: Option<(&'static str, &'static str)>,
    /// Arguments; `{cfg}` is replaced by the config path, `{dir}` by the temp dir.
    args: &'static [&'static str],
    code: i32,
    on: On,
    expect: &'static [&'static str],
}

const FILE0: &str = "[backends.file0]\nvolume_driver = \"file\"\n";

fn cases() -> Vec<Case> {
    let check: &'static [&'static str] = &["config", "check", "{cfg}"];
    vec![
        Case {
            name: "missing file",
            file: None,
            args: &["config", "check", "{dir}/nope.toml"],
            code: 1,
            on: On::Stderr,
            expect: &["nope.toml: cannot read config", "No such file"],
        },
        Case {
            name: "toml syntax",
            file: Some((
                "e.toml",
                "report_interval = 10\n[backends.file0\nvolume_driver = \"file\"\n",
            )),
            args: check,
            code: 1,
            on: On::Stderr,
            expect: &["e.toml:2:"],
        },
        Case {
            name: "unknown top-level key",
            file: Some((
                "e.toml",
                "report_intervall = 10\n[backends.file0]\nvolume_driver = \"file\"\n",
            )),
            args: check,
            code: 1,
            on: On::Stderr,
            expect: &[
                "e.toml:1: unknown key \"report_intervall\" in the top level; did you mean \"report_interval\"?",
            ],
        },
        Case {
            name: "negative interval",
            file: Some((
                "e.toml",
                "report_interval = -5\n[backends.file0]\nvolume_driver = \"file\"\n",
            )),
            args: check,
            code: 1,
            on: On::Stderr,
            expect: &[
                "e.toml:1: report_interval in the top level: expected a whole number >= 0, found -5",
            ],
        },
        Case {
            name: "zero report interval",
            file: Some((
                "e.toml",
                "report_interval = 0\n[backends.file0]\nvolume_driver = \"file\"\n",
            )),
            args: check,
            code: 1,
            on: On::Stderr,
            expect: &["report_interval", ">= 1"],
        },
        Case {
            name: "interval of the wrong type",
            file: Some((
                "e.toml",
                "service_down_time = \"ten\"\n[backends.file0]\nvolume_driver = \"file\"\n",
            )),
            args: check,
            code: 1,
            on: On::Stderr,
            expect: &["e.toml:1: service_down_time", "found \"ten\""],
        },
        Case {
            name: "typo in a backend",
            file: Some((
                "e.toml",
                "[backends.rbd0]\nvolume_driver = \"rbd\"\nrbd_pol = \"volumes\"\n",
            )),
            args: check,
            code: 1,
            on: On::Stdout,
            expect: &[
                "e.toml:3: unknown key \"rbd_pol\" in [backends.rbd0]; did you mean \"rbd_pool\"?",
            ],
        },
        Case {
            name: "unknown driver in cinder.conf",
            file: Some((
                "cinder.conf",
                "[DEFAULT]\nenabled_backends = rbd0\n\n[rbd0]\nvolume_driver = x\n",
            )),
            args: check,
            code: 1,
            on: On::Stdout,
            expect: &["cinder.conf:5: unknown volume_driver \"x\" in [rbd0]"],
        },
        Case {
            name: "enabled backend without section",
            file: Some((
                "cinder.conf",
                "[DEFAULT]\nenabled_backends = rbd0, rbd2\n[rbd0]\nvolume_driver = file\n",
            )),
            args: check,
            code: 1,
            on: On::Stdout,
            expect: &["enabled_backends names \"rbd2\" but there is no [rbd2] section"],
        },
        Case {
            name: "backend without driver",
            file: Some(("e.toml", "[backends.a]\nvolume_backend_name = \"a\"\n")),
            args: check,
            code: 1,
            on: On::Stdout,
            expect: &["e.toml:1: [backends.a] has no volume_driver"],
        },
        Case {
            name: "empty rbd pool",
            file: Some((
                "e.toml",
                "[backends.r]\nvolume_driver = \"rbd\"\nrbd_pool = \"\"\n",
            )),
            args: check,
            code: 1,
            on: On::Stdout,
            expect: &["e.toml:3: [backends.r] has no rbd_pool"],
        },
        Case {
            name: "bad boolean",
            file: Some((
                "cinder.conf",
                "[DEFAULT]\nenabled_backends = r\n[r]\nvolume_driver = rbd\nrbd_flatten_volume_from_snapshot = maybe\n",
            )),
            args: check,
            code: 1,
            on: On::Stdout,
            expect: &[
                "cinder.conf:5: rbd_flatten_volume_from_snapshot in [r]: expected true or false, found \"maybe\"",
            ],
        },
        Case {
            name: "percentage out of range",
            file: Some((
                "e.toml",
                "[backends.f]\nvolume_driver = \"file\"\nreserved_percentage = 150\n",
            )),
            args: check,
            code: 1,
            on: On::Stdout,
            expect: &[
                "e.toml:3: reserved_percentage in [backends.f]: expected a whole number from 0 to 100, found 150",
            ],
        },
        Case {
            name: "ini line without value",
            file: Some((
                "cinder.conf",
                "[DEFAULT]\nenabled_backends = a\nthis is not a setting\n",
            )),
            args: check,
            code: 1,
            on: On::Stderr,
            expect: &["cinder.conf:3: expected \"key = value\""],
        },
        Case {
            name: "stray toml table",
            file: Some(("e.toml", "[backend.file0]\nvolume_driver = \"file\"\n")),
            args: check,
            code: 1,
            on: On::Stderr,
            expect: &["e.toml:1: unknown key \"[backend]\"", "[backends.NAME]"],
        },
        Case {
            name: "rbd_secret_uuid not a uuid",
            file: Some((
                "e.toml",
                "[backends.r]\nvolume_driver = \"rbd\"\nrbd_secret_uuid = \"virsh-secret\"\n",
            )),
            args: check,
            code: 1,
            on: On::Stdout,
            expect: &[
                "e.toml:3: rbd_secret_uuid in",
                "expected the UUID of the libvirt secret",
                "virsh-secret",
            ],
        },
        Case {
            name: "export listen address",
            file: Some(("e.toml", FILE0)),
            args: &[
                "--config", "{cfg}", "volume", "export", "v", "--listen", "nowhere",
            ],
            code: 2,
            on: On::Stderr,
            expect: &["invalid value 'nowhere' for '--listen"],
        },
        Case {
            name: "no backends at all",
            file: Some(("e.toml", "report_interval = 10\n")),
            args: check,
            code: 1,
            on: On::Stderr,
            expect: &["no backend configured"],
        },
        Case {
            name: "database url scheme",
            file: Some(("e.toml", FILE0)),
            args: &[
                "--config",
                "{cfg}",
                "--database-url",
                "mysql://x/y",
                "service",
                "list",
            ],
            code: 1,
            on: On::Stderr,
            expect: &["unsupported database_url \"mysql://x/y\""],
        },
        Case {
            name: "unreachable postgres",
            file: Some(("e.toml", FILE0)),
            args: &[
                "--config",
                "{cfg}",
                "--database-url",
                "postgres://ember:pw@127.0.0.1:1/x",
                "service",
                "list",
            ],
            code: 1,
            on: On::Stderr,
            expect: &["database postgres://ember:***@127.0.0.1:1/x:"],
        },
        Case {
            name: "sqlite directory not creatable",
            file: Some(("e.toml", FILE0)),
            args: &[
                "--config",
                "{cfg}",
                "--database-url",
                "sqlite:///proc/ember-nope/e.db",
                "service",
                "list",
            ],
            code: 1,
            on: On::Stderr,
            expect: &["cannot create directory for /proc/ember-nope/e.db"],
        },
        Case {
            name: "unknown volume",
            file: Some(("e.toml", FILE0)),
            args: &[
                "--config",
                "{cfg}",
                "--database-url",
                "sqlite://{dir}/x.db",
                "volume",
                "show",
                "nope",
            ],
            code: 1,
            on: On::Stderr,
            expect: &["no volume with id or name \"nope\""],
        },
        Case {
            name: "unknown job",
            file: Some(("e.toml", FILE0)),
            args: &[
                "--config",
                "{cfg}",
                "--database-url",
                "sqlite://{dir}/x.db",
                "job",
                "show",
                "nope",
            ],
            code: 1,
            on: On::Stderr,
            expect: &["no job with id or name \"nope\""],
        },
        Case {
            name: "unknown subcommand",
            file: None,
            args: &["volumes", "list"],
            code: 2,
            on: On::Stderr,
            expect: &["unrecognized subcommand 'volumes'"],
        },
        Case {
            name: "limit out of range",
            file: None,
            args: &["events", "--limit", "0"],
            code: 2,
            on: On::Stderr,
            expect: &["invalid value '0' for '--limit"],
        },
        Case {
            name: "no config found",
            file: None,
            args: &["service", "list"],
            code: 1,
            on: On::Stderr,
            expect: &["no config file found; looked for config/ember.toml"],
        },
    ]
}

#[test]
fn every_bad_input_gives_a_clear_error_and_a_non_zero_exit() {
    let cases = cases();
    assert!(cases.len() >= 15);
    let mut failures = vec![];
    for case in &cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let cfg = case
            .file
            .map(|(name, text)| write(dir.path(), name, text))
            .unwrap_or_else(|| dir.path().join("none"));
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| {
                a.replace("{cfg}", cfg.to_str().unwrap())
                    .replace("{dir}", &d)
            })
            .collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        // HOME and cwd in the temp dir: "no config found" must not find the developer's file.
        let out = std::process::Command::new(EMBER)
            .args(&argv)
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env_remove("EMBER_CONFIG")
            .env_remove("EMBER_DATABASE_URL")
            .output()
            .unwrap();
        let (err, outp) = (stderr(&out), stdout(&out));
        let text = match case.on {
            On::Stderr => &err,
            On::Stdout => &outp,
        };
        let mut problems = vec![];
        if out.status.code() != Some(case.code) {
            problems.push(format!(
                "exit {:?}, expected {}",
                out.status.code(),
                case.code
            ));
        }
        for e in case.expect {
            if !text.contains(e) {
                problems.push(format!("{:?} does not contain {e:?}", case.on));
            }
        }
        if err.contains("panicked") || err.contains("RUST_BACKTRACE") {
            problems.push("panicked".into());
        }
        // Our own errors are one line (clap's usage errors carry a usage hint after it).
        if case.code == 1 && matches!(case.on, On::Stderr) && err.trim().lines().count() != 1 {
            problems.push("error is not one line".into());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "[{}] {}\n  stderr: {err}\n  stdout: {outp}",
                case.name,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Output piped into a reader that stops early (`grep -q`, `head`, here `true`): ember ends
/// quietly as `ls` does. It panicked in println! ("failed printing to stdout: Broken pipe"),
/// found by scripts/screenshots.sh's `ember events --json | grep -q ...`.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(
        dir.path(),
        &url,
        "[backends.file0]\nvolume_driver = \"file\"\n",
    );
    env.json(&["volume", "list"]); // creates the database
    let base = format!(
        "{EMBER} --config {} --database-url {url}",
        env.config.display()
    );
    for cmd in [
        "man",
        "completions bash",
        "events --json",
        "service list --json",
    ] {
        for _ in 0..5 {
            let o = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{base} {cmd} | true"))
                .output()
                .unwrap();
            let err = stderr(&o);
            assert!(
                !err.contains("panicked") && !err.contains("Broken pipe"),
                "{cmd}: {err}"
            );
        }
    }
}
