//! A file-backed image read through its parent chain: the file driver's layering rule in one
//! place, for the flatten's plan and for `volume verify`'s reads.
//!
//! The rule, as RBD's: a byte of a layered image is the image's own where its file holds data;
//! elsewhere it is its parent's, read the same way, as long as the byte lies within every link
//! of the chain up to that parent (a clone larger than its snapshot reads zeros past the
//! snapshot's end, whatever farther parents hold there); else zero.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::sparse::data_extents;

/// One image of a chain and how far it shows through.
struct Layer {
    name: String,
    file: File,
    /// The smallest size among this layer and every nearer one: past it, this layer is hidden.
    visible: u64,
}

/// An image and its parents, nearest first (layer 0 is the image itself).
pub struct Layers {
    layers: Vec<Layer>,
}

/// Where a range of the image comes from: layer `layer` holds `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub layer: usize,
    pub start: u64,
    pub end: u64,
}

impl Layers {
    /// `chain`: the image's file name then its parents', nearest first, each opened read-only
    /// by `open`.
    pub fn open(
        chain: &[String],
        mut open: impl FnMut(&str) -> io::Result<File>,
    ) -> io::Result<Layers> {
        let mut layers = Vec::with_capacity(chain.len());
        let mut visible = u64::MAX;
        for name in chain {
            let file = open(name)?;
            visible = visible.min(file.metadata()?.len());
            layers.push(Layer {
                name: name.clone(),
                file,
                visible,
            });
        }
        Ok(Layers { layers })
    }

    /// The image's size.
    pub fn size(&self) -> u64 {
        self.layers.first().map_or(0, |l| l.visible)
    }

    pub fn name(&self, layer: usize) -> &str {
        &self.layers[layer].name
    }

    pub fn file(&self, layer: usize) -> &File {
        &self.layers[layer].file
    }

    /// Which layer each part of `[from, to)` comes from, in offset order; parts no layer holds
    /// (zeros) are left out. With `from_layer = 1` the image's own data is ignored: what its
    /// parents would show where it holds nothing is what a flatten copies.
    pub fn resolve(&self, from: u64, to: u64, from_layer: usize) -> io::Result<Vec<Piece>> {
        let mut pieces = vec![];
        let mut open = vec![(from, to.min(self.size()))];
        for (i, layer) in self.layers.iter().enumerate() {
            let mut still = vec![];
            for (a, b) in open {
                let b = b.min(layer.visible);
                if a >= b {
                    continue; // hidden past this layer's end: zeros, whatever farther holds
                }
                let mut pos = a;
                for (x, y) in data_extents(&layer.file, a, b)? {
                    if i >= from_layer {
                        pieces.push(Piece {
                            layer: i,
                            start: x,
                            end: y,
                        });
                    }
                    if x > pos {
                        still.push((pos, x));
                    }
                    pos = y;
                }
                if pos < b {
                    still.push((pos, b));
                }
            }
            open = still;
            if open.is_empty() {
                break;
            }
        }
        pieces.sort_by_key(|p| p.start);
        Ok(pieces)
    }

    /// The ranges of `[from, to)` that hold data in any layer (the rest reads as zeros).
    pub fn extents(&self, from: u64, to: u64) -> io::Result<Vec<(u64, u64)>> {
        Ok(self
            .resolve(from, to, 0)?
            .into_iter()
            .map(|p| (p.start, p.end))
            .collect())
    }

    /// Reads `buf.len()` bytes at `off` as the image shows them (zeros past its end).
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        buf.fill(0);
        let end = off + buf.len() as u64;
        for p in self.resolve(off, end, 0)? {
            let dst = &mut buf[(p.start - off) as usize..(p.end - off) as usize];
            read_full(&self.layers[p.layer].file, dst, p.start)?;
        }
        Ok(())
    }
}

/// `read_exact_at`, except that a file shorter than the range leaves zeros (a sparse tail).
pub fn read_full(f: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                return Ok(());
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &std::path::Path, name: &str, len: u64, data: &[(u64, u8, usize)]) -> File {
        let f = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.join(name))
            .expect("create");
        f.set_len(len).expect("len");
        for &(off, byte, n) in data {
            f.write_all_at(&vec![byte; n], off).expect("write");
        }
        f
    }

    #[test]
    fn reads_through_the_chain_and_hides_what_a_shorter_link_cuts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blk = 64 << 10;
        // grand (3 blocks of 3s), parent (2 blocks: block 1 of 2s), clone (4 blocks: block 0 of 1s).
        file(dir.path(), "grand", 3 * blk, &[(0, 3, 3 * blk as usize)]);
        file(dir.path(), "parent", 2 * blk, &[(blk, 2, blk as usize)]);
        file(dir.path(), "clone", 4 * blk, &[(0, 1, blk as usize)]);
        let chain: Vec<String> = ["clone", "parent", "grand"].map(String::from).to_vec();
        let l = Layers::open(&chain, |n| File::open(dir.path().join(n))).expect("open");
        let mut buf = vec![9u8; 4 * blk as usize];
        l.read_at(&mut buf, 0).expect("read");
        let b = blk as usize;
        assert!(buf[..b].iter().all(|x| *x == 1));
        assert!(buf[b..2 * b].iter().all(|x| *x == 2));
        // Block 2: grand holds 3s there, but parent (2 blocks) hides it.
        assert!(buf[2 * b..].iter().all(|x| *x == 0));
        let plan = l.resolve(0, 4 * blk, 1).expect("plan");
        assert_eq!(
            plan,
            vec![Piece {
                layer: 1,
                start: blk,
                end: 2 * blk
            }]
        );
    }
}
