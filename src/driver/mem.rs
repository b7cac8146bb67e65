//! An image in memory for the copy and backup-store tests: its extents are its non-zero 64 KiB
//! blocks, as a sparse file's would be, and it counts the bytes written into it.

use std::cell::RefCell;

use super::transfer::Writable;
use super::verify::Readable;

pub struct Mem(pub RefCell<Vec<u8>>, pub RefCell<u64>);

impl Mem {
    pub fn new(data: Vec<u8>) -> Mem {
        Mem(RefCell::new(data), RefCell::new(0))
    }
}

impl Readable for Mem {
    fn size(&self) -> u64 {
        self.0.borrow().len() as u64
    }
    fn extents(&self) -> Result<Vec<(u64, u64)>, String> {
        let d = self.0.borrow();
        let blk = 64 << 10;
        Ok((0..d.len())
            .step_by(blk)
            .filter(|&o| d[o..(o + blk).min(d.len())].iter().any(|b| *b != 0))
            .map(|o| (o as u64, (o + blk).min(d.len()) as u64))
            .collect())
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), String> {
        let d = self.0.borrow();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = d.get(off as usize + i).copied().unwrap_or(0);
        }
        Ok(())
    }
}

impl Writable for Mem {
    fn write_at(&self, buf: &[u8], off: u64) -> Result<(), String> {
        *self.1.borrow_mut() += buf.len() as u64;
        self.0.borrow_mut()[off as usize..off as usize + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> Result<(), String> {
        Ok(())
    }
}
