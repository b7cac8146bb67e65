//! Garbage in: mutated configs (ember TOML and cinder.conf: byte flips, truncations, huge
//! values, unicode, deep nesting, long lines) and random command lines go through the same
//! parsers the binary uses. None may panic, and every error is one line naming the file (for
//! configs) or what is wrong (for arguments). `EMBER_FUZZ_ROUNDS` sets the rounds (10,000
//! each by default); the seed is printed, and `EMBER_FUZZ_SEED` replays one.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn rounds() -> usize {
    std::env::var("EMBER_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn rng(name: &str) -> StdRng {
    let seed = std::env::var("EMBER_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    eprintln!("{name}: seed {seed} (EMBER_FUZZ_SEED={seed} replays it)");
    StdRng::seed_from_u64(seed)
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![];
    for dir in ["config", "tests/valid_configs"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if (name.ends_with(".toml") || name.ends_with(".conf")) && !name.starts_with("keymap") {
                out.push((name, std::fs::read(&p).unwrap()));
            }
        }
    }
    assert!(out.len() >= 3, "config seeds: {}", out.len());
    out
}

fn mutate(r: &mut StdRng, text: &[u8]) -> Vec<u8> {
    let mut t = text.to_vec();
    for _ in 0..r.random_range(1..4) {
        let at = if t.is_empty() {
            0
        } else {
            r.random_range(0..t.len())
        };
        match r.random_range(0..9) {
            0 => {
                if !t.is_empty() {
                    t[at] ^= 1 << r.random_range(0..8);
                }
            }
            1 => t.truncate(at),
            2 => t.insert(at, r.random::<u8>()),
            3 => {
                let s = [
                    "99999999999999999999999",
                    "-1",
                    "1e308",
                    "nan",
                    "0x",
                    "\"\"",
                    "true",
                ][r.random_range(0..7)];
                t.splice(at..at, s.bytes());
            }
            4 => {
                let s = [
                    "é", "日本", "\u{202e}", "\u{0}", "🔥", "\u{feff}", "\\u0000",
                ][r.random_range(0..7)];
                t.splice(at..at, s.bytes());
            }
            5 => {
                // Deep nesting: arrays, inline tables, or section headers.
                let n = r.random_range(1..3000);
                let s = match r.random_range(0..3) {
                    0 => format!("\nx = {}{}\n", "[".repeat(n), "]".repeat(n)),
                    1 => format!("\nx = {}1{}\n", "{a=".repeat(n), "}".repeat(n)),
                    _ => format!("\n[{}]\n", vec!["a"; n.min(500)].join(".")),
                };
                t.splice(at..at, s.bytes());
            }
            6 => {
                let s = "a".repeat(r.random_range(1..40_000));
                t.splice(at..at, s.bytes());
            }
            7 => {
                // A line repeated (duplicate keys and sections).
                let line: Vec<u8> = t[at..]
                    .split(|b| *b == b'\n')
                    .next()
                    .unwrap_or(&[])
                    .to_vec();
                t.splice(at..at, line.into_iter().chain([b'\n']));
            }
            _ => {
                let s = [
                    "[",
                    "]",
                    "=",
                    "\n",
                    "\"",
                    "'",
                    "#",
                    ";",
                    "[backends.",
                    "[DEFAULT]\n",
                ][r.random_range(0..10)];
                t.splice(at..at, s.bytes());
            }
        }
    }
    t
}

#[test]
fn mutated_configs_never_panic_and_fail_in_one_line_naming_the_file() {
    let seeds = seeds();
    let mut r = rng("configs");
    let dir = tempfile::tempdir().unwrap();
    let (mut ok, mut failed) = (0, 0);
    for i in 0..rounds() {
        let (name, text) = &seeds[i % seeds.len()];
        let ext = if name.ends_with(".conf") {
            "conf"
        } else {
            "toml"
        };
        let path: PathBuf = dir.path().join(format!("m{}.{ext}", i % 16));
        let bytes = mutate(&mut r, text);
        std::fs::write(&path, &bytes).unwrap();
        let got = std::panic::catch_unwind(|| {
            ember::config::load(&path)
                .map(drop)
                .map_err(|e| e.to_string())
        });
        let Ok(got) = got else {
            let keep = dir.path().join("panic-input");
            std::fs::write(&keep, &bytes).unwrap();
            panic!("config parser panicked on a mutation of {name} (round {i})");
        };
        match got {
            Ok(_) => ok += 1,
            Err(msg) => {
                failed += 1;
                assert!(
                    !msg.contains('\n'),
                    "not one line ({name}, round {i}): {msg}"
                );
                assert!(
                    msg.contains(&path.display().to_string()),
                    "does not name the file ({name}, round {i}): {msg}"
                );
            }
        }
    }
    eprintln!("configs: {ok} loaded, {failed} refused, 0 panics");
    assert!(
        failed > 0,
        "the mutations never broke a config: they test nothing"
    );
}

#[test]
fn random_command_lines_never_panic_and_fail_in_one_line() {
    use ember::cli::args::{Parsed, parse_args};
    const WORDS: &[&str] = &[
        "volume",
        "create",
        "delete",
        "extend",
        "flatten",
        "snapshot",
        "list",
        "show",
        "job",
        "cancel",
        "watch",
        "service",
        "disable",
        "enable",
        "remove",
        "backend",
        "events",
        "config",
        "check",
        "doctor",
        "bench",
        "db",
        "roles",
        "serve",
        "console",
        "reconcile",
        "--size",
        "--backend",
        "--wait",
        "--json",
        "--config",
        "--database-url",
        "--read-only",
        "--attach",
        "--theme",
        "--snapshot",
        "--source",
        "--cascade",
        "--fix",
        "--reason",
        "--limit",
        "--host",
        "--all",
        "--strict",
        "--verbose",
        "--apply",
        "--ceph-checks",
        "--stuck-after",
        "-h",
        "-V",
        "--",
        "-",
        "",
        "10G",
        "0",
        "-5",
        "1e99",
        "512M",
        "x",
        "é",
        "\u{0}",
        "🔥",
        "99999999999999999999999",
        "--size=",
        "--limit=-1",
        "=",
        "file0",
    ];
    let mut r = rng("command lines");
    let (mut ran, mut bad, mut printed) = (0, 0, 0);
    for i in 0..rounds() {
        let n = r.random_range(0..7);
        let mut args = vec!["ember".to_string()];
        for _ in 0..n {
            if r.random_range(0..10) == 0 {
                let len = r.random_range(0..40);
                args.push((0..len).map(|_| r.random::<char>()).collect());
            } else {
                args.push(WORDS[r.random_range(0..WORDS.len())].to_string());
            }
        }
        let got = std::panic::catch_unwind(|| parse_args(args.clone()));
        let Ok(got) = got else {
            panic!("the argument parser panicked on {args:?} (round {i})");
        };
        match got {
            Parsed::Run(_) => ran += 1,
            Parsed::Print(_) => printed += 1,
            Parsed::Bad(line) => {
                bad += 1;
                assert!(
                    !line.contains('\n') && !line.trim().is_empty(),
                    "{args:?}: {line:?}"
                );
            }
        }
    }
    eprintln!("command lines: {ran} parsed, {printed} help/version, {bad} refused, 0 panics");
    assert!(
        bad > 0 && ran > 0,
        "the vectors test nothing: {ran} parsed, {bad} refused"
    );
}
