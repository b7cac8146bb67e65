//! The file driver's images as a copy, a comparison or a restore reads and writes them:
//! through their layers, and (a copy's or restore's target) into their own file.

use std::fs::File;

use super::layers::Layers;

/// A layered file image as `volume verify` reads it.
pub(super) struct FileReader<'a>(pub(super) &'a Layers);

impl super::verify::Readable for FileReader<'_> {
    fn size(&self) -> u64 {
        self.0.size()
    }

    fn extents(&self) -> Result<Vec<(u64, u64)>, String> {
        self.0.extents(0, self.0.size()).map_err(|e| e.to_string())
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), String> {
        self.0.read_at(buf, off).map_err(|e| e.to_string())
    }
}

/// A volume open for a migration's copy: read through its layers; written (when opened to
/// write) into its own file, which for a copy's target is the only layer.
pub(super) struct FileImage {
    pub(super) layers: Layers,
    pub(super) write: Option<File>,
}

impl super::verify::Readable for FileImage {
    fn size(&self) -> u64 {
        FileReader(&self.layers).size()
    }

    fn extents(&self) -> Result<Vec<(u64, u64)>, String> {
        FileReader(&self.layers).extents()
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), String> {
        FileReader(&self.layers).read_at(buf, off)
    }
}

impl super::transfer::Writable for FileImage {
    fn write_at(&self, buf: &[u8], off: u64) -> Result<(), String> {
        let f = self.write.as_ref().ok_or("opened read-only")?;
        super::sparse::write_all_at(f, buf, off).map_err(|e| e.to_string())
    }

    fn write_from_file(&self, src: &File, len: u64, off: u64) -> Option<Result<(), String>> {
        let f = self.write.as_ref()?;
        Some(super::sparse::copy_between(src, 0, f, off, len).map_err(|e| e.to_string()))
    }

    fn flush(&self) -> Result<(), String> {
        match &self.write {
            Some(f) => f.sync_data().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}
