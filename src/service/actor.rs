//! Who asked: the OS user, and the SSH client's address when the operator came in over SSH.
//! Written into jobs and events so that "who flattened this at 3 a.m." has an answer.

pub fn current_actor() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()));
    match std::env::var("SSH_CLIENT")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
    {
        Some(addr) => format!("{user} (ssh from {addr})"),
        None => user,
    }
}
