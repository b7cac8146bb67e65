//! A TCP proxy on loopback between one ember process and PostgreSQL, which a test can cut:
//! while cut, bytes are held in both directions (the connections stay open, as in a network
//! partition), and they flow again when it is restored.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

fn hold(flag: &AtomicBool, stop: &AtomicBool) {
    while flag.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, cut: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = vec![0u8; 64 << 10];
    while !stop.load(Ordering::SeqCst) {
        hold(&cut, &stop);
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hold(&cut, &stop);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (cut.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(down) = conn else { continue };
                let Ok(up) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (d2, u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                let (c1, s1, c2, s2) = (c.clone(), s.clone(), c.clone(), s.clone());
                std::thread::spawn(move || pump(down, up, c1, s1));
                std::thread::spawn(move || pump(u2, d2, c2, s2));
            }
        });
        Proxy { port, cut, stop }
    }

    /// Cuts (true) or restores (false) the link.
    pub fn cut(&self, on: bool) {
        self.cut.store(on, Ordering::SeqCst);
    }

    /// The same PostgreSQL URL, through this proxy.
    pub fn url(&self, url: &str) -> String {
        let (head, rest) = url.split_once("127.0.0.1:").unwrap();
        let tail = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        format!("{head}127.0.0.1:{}{tail}", self.port)
    }

    /// The PostgreSQL server a URL names (loopback only).
    pub fn upstream_of(url: &str) -> SocketAddr {
        let (_, rest) = url.split_once("127.0.0.1:").unwrap();
        let port: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        format!("127.0.0.1:{port}").parse().unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
