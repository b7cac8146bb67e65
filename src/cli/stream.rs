//! Listings that stream: rows are printed as the database returns them, never gathered into a
//! whole table first, so `volume list` at 100,000 rows starts at once and stays small.
//! JSON is the same document `--json` always printed (a pretty array); the text table has
//! fixed column widths (a streamed table cannot measure its rows first).

use std::io::Write;

use serde::Serialize;

/// A JSON array written one element at a time, formatted as `serde_json::to_string_pretty`
/// formats a whole array.
pub struct JsonArray<W: Write> {
    out: W,
    count: usize,
}

impl<W: Write> JsonArray<W> {
    pub fn new(out: W) -> Self {
        JsonArray { out, count: 0 }
    }

    pub fn item<T: Serialize>(&mut self, v: &T) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(v)?;
        self.out
            .write_all(if self.count == 0 { b"[\n" } else { b",\n" })?;
        for (i, line) in text.lines().enumerate() {
            if i > 0 {
                self.out.write_all(b"\n")?;
            }
            write!(self.out, "  {line}")?;
        }
        self.count += 1;
        Ok(())
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        self.out
            .write_all(if self.count == 0 { b"[]\n" } else { b"\n]\n" })?;
        self.out.flush()?;
        Ok(())
    }
}

/// A text table with fixed column widths, written row by row.
pub struct TextTable<W: Write> {
    out: W,
    widths: Vec<usize>,
}

impl<W: Write> TextTable<W> {
    /// `columns`: (title, width); the last column takes what it needs.
    pub fn new(mut out: W, columns: &[(&str, usize)]) -> anyhow::Result<Self> {
        let widths: Vec<usize> = columns.iter().map(|c| c.1).collect();
        let titles: Vec<String> = columns.iter().map(|c| c.0.to_string()).collect();
        Self::line(&mut out, &widths, &titles)?;
        Ok(TextTable { out, widths })
    }

    fn line(out: &mut W, widths: &[usize], cells: &[String]) -> anyhow::Result<()> {
        let last = widths.len().saturating_sub(1);
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i == last {
                writeln!(out, "{c}")?;
            } else if c.chars().count() > *w {
                let cut: String = c.chars().take(w.saturating_sub(1)).collect();
                write!(out, "{cut}… ")?;
            } else {
                write!(out, "{c:<w$} ")?;
            }
        }
        Ok(())
    }

    pub fn row(&mut self, cells: &[String]) -> anyhow::Result<()> {
        Self::line(&mut self.out, &self.widths, cells)
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_json_is_what_a_whole_array_prints() {
        let items = [
            serde_json::json!({"id": "a", "n": 1, "tags": ["x"]}),
            serde_json::json!({"id": "b", "n": 2, "tags": []}),
        ];
        for n in [0, 1, 2] {
            let mut buf = vec![];
            let mut arr = JsonArray::new(&mut buf);
            for i in &items[..n] {
                arr.item(i).unwrap_or_else(|e| panic!("{e}"));
            }
            arr.finish().unwrap_or_else(|e| panic!("{e}"));
            let whole = serde_json::to_string_pretty(&items[..n].to_vec()).unwrap_or_default();
            assert_eq!(String::from_utf8_lossy(&buf), format!("{whole}\n"));
        }
    }
}
