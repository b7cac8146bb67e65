//! Which processes on this host have a file open, from `/proc/<pid>/fd` (what `fuser -v` and
//! `lsof` read): the file backend's answer to "who has this volume open".

use std::path::Path;

use super::Holder;

/// Every process (but this one) with `path` open, as holders: `pid 1234` and its command line.
/// Processes this user may not inspect are skipped, as `fuser` does without root. An ember
/// process (a service or a command running a job: a copy, a backup, a verify) is marked as
/// ember's own, as an ember service's rbd client is: its job, not a consumer of the volume.
pub fn holders(path: &Path) -> Vec<Holder> {
    let Ok(target) = std::fs::canonicalize(path) else {
        return vec![];
    };
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let mut out = vec![];
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let open = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|p| p == target));
        if open {
            out.push(Holder {
                client: format!("pid {pid}"),
                address: command_line(pid),
                how: "open file".into(),
                cookie: None,
                host: None,
                ember: is_ember(pid),
            });
        }
    }
    out
}

/// Whether process `pid` runs ember: its executable has this program's file name, or
/// `ember` (an installed copy beside a build). A binary replaced since it started reads
/// `ember (deleted)`.
fn is_ember(pid: u32) -> bool {
    let name = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.trim_end_matches(" (deleted)").to_string())
    };
    let Some(theirs) = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| name(&p))
    else {
        return false;
    };
    theirs == "ember" || std::env::current_exe().ok().and_then(|p| name(&p)) == Some(theirs)
}

/// `/proc/<pid>/cmdline` with spaces, or the short name from `comm`.
fn command_line(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let line = raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if line.is_empty() {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_child_holding_a_file_open() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = dir.path().join("volume-x");
        std::fs::write(&f, b"data").unwrap_or_else(|e| panic!("{e}"));
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec 3<'{}'; sleep 30", f.display()))
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let pid = child.id();
        let mut seen = vec![];
        for _ in 0..100 {
            seen = holders(&f);
            if !seen.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            seen.iter()
                .any(|h| h.client == format!("pid {pid}") && !h.ember),
            "{seen:?}"
        );
        assert!(holders(&dir.path().join("nothing")).is_empty());
    }

    /// A process whose executable is called `ember` (here a copy of `sleep`) holding the file
    /// is ember's own, not a consumer.
    #[test]
    fn an_ember_process_is_marked_as_ember() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = dir.path().join("volume-x");
        std::fs::write(&f, b"data").unwrap_or_else(|e| panic!("{e}"));
        let exe = dir.path().join("ember");
        std::fs::copy("/bin/sleep", &exe).unwrap_or_else(|e| panic!("{e}"));
        // Another test's fork may still hold the new file open for writing (ETXTBSY, exit
        // 126): start again.
        let (mut seen, mut pid) = (vec![], 0);
        'start: for _ in 0..20 {
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "exec 3<'{}'; exec '{}' 30",
                    f.display(),
                    exe.display()
                ))
                .spawn()
                .unwrap_or_else(|e| panic!("{e}"));
            pid = child.id();
            for _ in 0..100 {
                seen = holders(&f);
                if seen.iter().any(|h| h.ember) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break 'start;
                }
                if child.try_wait().ok().flatten().is_some() {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    continue 'start;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(
            seen.iter()
                .any(|h| h.client == format!("pid {pid}") && h.ember),
            "{seen:?}"
        );
    }
}
