//! `log_format = "json"`: tracing-subscriber's JSON lines, each stamped with the host that
//! wrote it (`"host"`: the config's `host`), so that lines from several hosts gathered in Loki
//! or journald still say where they came from.

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;

/// Writes each JSON line to `W` with `"host":"..."` as its first field.
pub struct HostStamped<W> {
    /// `{"host":"storage-01",`: what replaces a line's opening brace.
    opening: Vec<u8>,
    inner: W,
}

impl<W> HostStamped<W> {
    pub fn new(host: &str, inner: W) -> Self {
        let host = serde_json::to_string(host).unwrap_or_else(|_| "\"?\"".into());
        HostStamped {
            opening: format!("{{\"host\":{host},").into_bytes(),
            inner,
        }
    }
}

/// One event's line on its way (the JSON formatter writes a line in one call).
pub struct Line<'a, L: Write> {
    opening: &'a [u8],
    inner: L,
}

impl<L: Write> Write for Line<'_, L> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match buf.strip_prefix(b"{") {
            Some(rest) if rest.first() != Some(&b'}') => {
                self.inner.write_all(self.opening)?;
                self.inner.write_all(rest)?;
            }
            _ => self.inner.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for HostStamped<W> {
    type Writer = Line<'a, W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            opening: &self.opening,
            inner: self.inner.make_writer(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_gets_the_host_first_and_stays_json() {
        let mut out = vec![];
        {
            let mut l = Line {
                opening: br#"{"host":"st\"01","#,
                inner: &mut out,
            };
            l.write_all(b"{\"level\":\"INFO\",\"message\":\"hi\"}\n")
                .unwrap_or_default();
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        assert_eq!(v["host"], "st\"01");
        assert_eq!(v["message"], "hi");
    }
}
