//! Shell completion through real bash, zsh and fish, as an operator's shell runs it: the registration that
//! `ember completions bash` prints, then the completion function asking the binary, which
//! completes volume, snapshot, backend and job names from the database. The manual page comes
//! from the same definitions.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

/// The candidates bash gets for the words typed (the last one is being completed).
fn complete(env: &Env, words: &[&str]) -> Vec<String> {
    let script = format!(
        "source <({EMBER} completions bash)\n\
         COMP_WORDS=({})\nCOMP_CWORD=$((${{#COMP_WORDS[@]}}-1))\nCOMP_TYPE=9\n\
         _clap_complete_ember ember \"${{COMP_WORDS[$COMP_CWORD]}}\" x\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .env("EMBER_CONFIG", &env.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn bash_completes_names_from_the_database_and_the_man_page_lists_commands() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let mut env = Env::new(
        dir.path(),
        &url,
        "[backends.file0]\nvolume_driver = \"file\"\n",
    );
    // The config names the database (completion reads the config, as the commands do).
    let text = std::fs::read_to_string(&env.config).unwrap();
    env.config = write(
        dir.path(),
        "ember.toml",
        &format!("database_url = \"{url}\"\n{text}"),
    );
    let _serve = env.serve();
    env.json(&["volume", "create", "alpha", "--size", "1M", "--wait"]);
    env.json(&["volume", "create", "alpine", "--size", "1M", "--wait"]);
    env.json(&["volume", "create", "beta", "--size", "1M", "--wait"]);
    env.json(&[
        "volume", "snapshot", "create", "nightly", "--volume", "alpha", "--wait",
    ]);

    let mut got = complete(&env, &["ember", "volume", "show", "al"]);
    got.sort();
    assert_eq!(got, ["alpha", "alpine"]);
    let got = complete(&env, &["ember", "volume", "delete", ""]);
    for v in ["alpha", "alpine", "beta", "--cascade", "--force"] {
        assert!(got.contains(&v.to_string()), "{v} missing: {got:?}");
    }
    assert_eq!(
        complete(&env, &["ember", "volume", "snapshot", "delete", "ni"]),
        ["nightly"]
    );
    assert_eq!(
        complete(&env, &["ember", "volume", "create", "x", "--snapshot", ""])
            .iter()
            .filter(|c| !c.starts_with('-'))
            .collect::<Vec<_>>(),
        ["nightly"]
    );
    assert_eq!(
        complete(&env, &["ember", "volume", "list", "--backend", ""]),
        ["file0"]
    );
    let jobs = complete(&env, &["ember", "job", "show", ""]);
    let first = env.json(&["job", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(jobs.contains(&first), "{first} not in {jobs:?}");
    assert_eq!(complete(&env, &["ember", "vol"]), ["volume"]);
    // A database that does not answer completes nothing, at once, and does not hang the shell.
    let started = std::time::Instant::now();
    let none = complete(
        &env,
        &[
            "ember",
            "--database-url",
            "postgres://x:y@127.0.0.1:1/none",
            "volume",
            "show",
            "",
        ],
    );
    assert!(none.iter().all(|c| c.starts_with('-')), "{none:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    let man = ember(&["man"]);
    let page = stdout(&man);
    assert!(man.status.success());
    assert!(
        page.starts_with(".ie") || page.contains(".TH ember 1"),
        "{}",
        &page[..200.min(page.len())]
    );
    for cmd in ["volume", "job", "events", "doctor", "completions"] {
        assert!(page.contains(cmd), "{cmd} not in the man page");
    }
    // zsh: its registered function, run by zsh with compsys's _describe stood in for by one
    // that prints what it is given; fish: its own `complete -C`.
    let zsh = Command::new("zsh")
        .args([
            "-c",
            &format!(
                "compdef() {{ :; }}\n_describe() {{ local name=$3; print -l ${{(P)name}}; }}\n\
                 source <({EMBER} completions zsh)\nwords=(ember volume show al); CURRENT=4\n\
                 _clap_dynamic_completer_ember"
            ),
        ])
        .env("EMBER_CONFIG", &env.config)
        .output()
        .unwrap();
    let mut got: Vec<String> = stdout(&zsh).lines().map(String::from).collect();
    got.sort();
    assert_eq!(
        got,
        ["alpha:available file0", "alpine:available file0"],
        "{}",
        stderr(&zsh)
    );
    let fish = Command::new("fish")
        .args([
            "-c",
            &format!("{EMBER} completions fish | source; complete -C 'ember volume show al'"),
        ])
        .env("EMBER_CONFIG", &env.config)
        .output()
        .unwrap();
    let mut got: Vec<String> = stdout(&fish).lines().map(String::from).collect();
    got.sort();
    assert_eq!(
        got,
        ["alpha\tavailable file0", "alpine\tavailable file0"],
        "{}",
        stderr(&fish)
    );

    let bad = ember(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("bash"), "{}", stderr(&bad));
}
