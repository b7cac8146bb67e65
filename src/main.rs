//! The binary edge: parse the command line, set up logging and the runtime, run, and turn any
//! error into one clear line on stderr and a non-zero exit.

use std::process::ExitCode;

use ember::cli::{
    self,
    args::{Command, Parsed, parse_args},
};

fn main() -> ExitCode {
    // A shell asking for completions (`COMPLETE=bash ember -- ...`) is answered and exits here.
    ember::cli::complete::answer_if_asked();
    let parsed = match parse_args(std::env::args_os()) {
        Parsed::Run(c) => *c,
        Parsed::Print(help) => help.exit(),
        Parsed::Bad(line) => {
            eprintln!("ember: error: {line}");
            return ExitCode::from(2);
        }
    };
    let command = parsed.command.unwrap_or(Command::Console {
        no_worker: false,
        args: Default::default(),
    });
    // A command's output piped into `grep -q` or `head` that stops reading: end quietly, as
    // `ls` or `rbd` do, instead of panicking in println! on EPIPE. Only for the short commands:
    // the service and the console keep Rust's ignored SIGPIPE (sockets already use
    // MSG_NOSIGNAL, so this touches only writes to a closed pipe).
    if !matches!(command, Command::Console { .. } | Command::Serve) {
        restore_default_sigpipe();
    }
    // The console draws its own log view and writes a log file; everything else logs to stderr.
    // The service's lines may be JSON (`log_format`); a config that cannot be read here is
    // reported by the command itself, in text.
    if !matches!(command, Command::Console { .. }) {
        let json_host = match command {
            Command::Serve => cli::load_config(&parsed.global)
                .ok()
                .filter(|c| c.log_format == ember::config::LogFormat::Json)
                .map(|c| c.host),
            _ => None,
        };
        let fmt = tracing_subscriber::fmt().with_env_filter(cli::log_filter());
        match json_host {
            Some(host) => fmt
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_writer(cli::json_log::HostStamped::new(&host, std::io::stderr))
                .init(),
            None => fmt
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false)
                .init(),
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ember: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(cli::run(command, parsed.global, parsed.console));
    // A storage call still running on a blocking thread (it cannot be killed) must not keep
    // the process alive after the services stopped.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ember: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[allow(unsafe_code)]
fn restore_default_sigpipe() {
    // SAFETY: setting a signal's disposition to its default, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
