//! Sparse-file primitives for the file driver: where a file holds data (SEEK_DATA/SEEK_HOLE),
//! and an in-kernel copy of a range (`copy_file_range`), so copies touch only allocated
//! extents.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::unistd::{Whence, lseek};

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

/// Copies `[off, off + len)` of `src` to the same offset of `dst`, all of it: in-kernel
/// (`copy_file_range`) where the files allow, else through a buffer. A source that ends before
/// the range does is an error, never a silently short copy. The caller cuts the range into
/// chunks (see `pace.rs`) to report progress and cancel between them.
pub fn copy_range(src: &File, dst: &File, off: u64, len: u64) -> io::Result<()> {
    let end = off + len;
    let mut pos = off;
    let mut buf: Vec<u8> = vec![];
    while pos < end {
        let want = (end - pos) as usize;
        let (mut o_in, mut o_out) = (pos as i64, pos as i64);
        let n = match nix::fcntl::copy_file_range(src, Some(&mut o_in), dst, Some(&mut o_out), want)
        {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            // Not supported between these files: copy through a buffer.
            Err(Errno::EXDEV | Errno::ENOSYS | Errno::EINVAL | Errno::EOPNOTSUPP) => {
                buf.resize(want.min(1 << 20), 0);
                let n = src.read_at(&mut buf, pos)?;
                dst.write_all_at(&buf[..n], pos)?;
                n
            }
            Err(e) => return Err(io::Error::from(e)),
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the source ends at byte {pos}, before {end}"),
            ));
        }
        pos += n as u64;
    }
    Ok(())
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

        let b = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join("b"))
            .expect("b");
        b.set_len(64 << 20).expect("len");
        copy_range(&a, &b, ext[0].0, ext[0].1 - ext[0].0).expect("copy");
        let mut got = vec![0u8; 1 << 20];
        b.read_exact_at(&mut got, 16 << 20).expect("read");
        assert!(got.iter().all(|x| *x == 7));
        assert_eq!(
            data_extents(&b, 0, 64 << 20).expect("ext b").len(),
            1,
            "copy stays sparse"
        );
        assert!(
            copy_range(&a, &b, (64 << 20) - 10, 20).is_err(),
            "past the source's end"
        );
    }
}
