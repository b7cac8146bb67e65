//! Sparse-file primitives for the file driver: where a file holds data (SEEK_DATA/SEEK_HOLE),
//! and an in-kernel chunked copy of a range (`copy_file_range`) that reports each chunk, so
//! copies touch only allocated extents and can be cancelled between chunks.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::unistd::{Whence, lseek};

/// Copy granularity: progress and cancellation are checked after each chunk.
pub const CHUNK: u64 = 8 << 20;

fn seek(f: &File, pos: u64, whence: Whence) -> io::Result<Option<u64>> {
    match lseek(f, pos as i64, whence) {
        Ok(p) => Ok(Some(p as u64)),
        // ENXIO: no data (or hole) at or after `pos`.
        Err(Errno::ENXIO) => Ok(None),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// The data extents of `f` within `[from, to)`, as `(start, end)` pairs.
pub fn data_extents(f: &File, from: u64, to: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = vec![];
    let mut pos = from;
    while pos < to {
        let Some(start) = seek(f, pos, Whence::SeekData)? else {
            break;
        };
        if start >= to {
            break;
        }
        let end = seek(f, start, Whence::SeekHole)?.unwrap_or(to).min(to);
        out.push((start, end));
        pos = end;
    }
    Ok(out)
}

/// The holes of `f` within `[from, to)`: where a layered volume still reads from its parent.
pub fn holes_within(f: &File, from: u64, to: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = vec![];
    let mut pos = from;
    for (start, end) in data_extents(f, from, to)? {
        if start > pos {
            out.push((pos, start));
        }
        pos = end;
    }
    if pos < to {
        out.push((pos, to));
    }
    Ok(out)
}

/// Copies `[off, off + len)` of `src` to the same offset of `dst`, `chunk` bytes at a time
/// (at most [`CHUNK`]). `tick` gets the bytes of each chunk and returns false to stop.
/// Returns false when stopped.
pub fn copy_range(
    src: &File,
    dst: &File,
    off: u64,
    len: u64,
    chunk: u64,
    tick: &mut dyn FnMut(u64) -> bool,
) -> io::Result<bool> {
    let chunk = chunk.clamp(4096, CHUNK);
    let end = off + len;
    let mut pos = off;
    let mut buf: Vec<u8> = vec![];
    while pos < end {
        let want = (end - pos).min(chunk) as usize;
        let (mut o_in, mut o_out) = (pos as i64, pos as i64);
        let n = match nix::fcntl::copy_file_range(src, Some(&mut o_in), dst, Some(&mut o_out), want)
        {
            Ok(n) => n,
            // Not supported between these files: copy through a buffer.
            Err(Errno::EXDEV | Errno::ENOSYS | Errno::EINVAL | Errno::EOPNOTSUPP) => {
                buf.resize(want, 0);
                let n = src.read_at(&mut buf, pos)?;
                dst.write_all_at(&buf[..n], pos)?;
                n
            }
            Err(e) => return Err(io::Error::from(e)),
        };
        if n == 0 {
            // The source ended early (shorter than the range): the rest reads as zeros.
            break;
        }
        pos += n as u64;
        if !tick(n as u64) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_holes_and_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join("a"))
            .expect("a");
        a.set_len(64 << 20).expect("len");
        a.write_all_at(&vec![7u8; 1 << 20], 16 << 20)
            .expect("write");
        let ext = data_extents(&a, 0, 64 << 20).expect("extents");
        assert_eq!(ext.len(), 1);
        assert!(ext[0].0 <= 16 << 20 && ext[0].1 >= 17 << 20, "{ext:?}");
        let holes = holes_within(&a, 0, 64 << 20).expect("holes");
        assert_eq!(holes.first().map(|h| h.0), Some(0));

        let b = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join("b"))
            .expect("b");
        b.set_len(64 << 20).expect("len");
        let mut copied = 0;
        let done = copy_range(&a, &b, ext[0].0, ext[0].1 - ext[0].0, CHUNK, &mut |n| {
            copied += n;
            true
        })
        .expect("copy");
        assert!(done);
        assert_eq!(copied, ext[0].1 - ext[0].0);
        let mut got = vec![0u8; 1 << 20];
        b.read_exact_at(&mut got, 16 << 20).expect("read");
        assert!(got.iter().all(|x| *x == 7));
        assert_eq!(
            data_extents(&b, 0, 64 << 20).expect("ext b").len(),
            1,
            "copy stays sparse"
        );
    }
}
