//! The `file` driver, ember's embedded default storage: each volume is a sparse file
//! `volume-<uuid>` under the backend's `file_dir`, so an operator finds a volume's data by its
//! id with `ls`. Capacity is the filesystem's.

use std::path::PathBuf;

use super::{Capacity, DriverError, ImageInfo, VolumeDriver};

#[derive(Debug)]
pub struct FileDriver {
    backend: String,
    dir: PathBuf,
}

impl FileDriver {
    pub fn new(backend: &str, dir: PathBuf) -> Self {
        Self {
            backend: backend.to_string(),
            dir,
        }
    }

    fn err(&self, op: &'static str, e: impl std::fmt::Display) -> DriverError {
        DriverError::Io {
            backend: self.backend.clone(),
            op,
            message: e.to_string(),
        }
    }
}

impl VolumeDriver for FileDriver {
    fn backend(&self) -> &str {
        &self.backend
    }

    fn check_setup(&self) -> Result<(), DriverError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| self.err("create file_dir", format!("{}: {e}", self.dir.display())))?;
        // Writable? A read-only mount must fail here, not at the first volume create.
        let probe = self.dir.join(".ember-write-probe");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| self.err("write to file_dir", format!("{}: {e}", self.dir.display())))
    }

    fn capacity(&self) -> Result<Capacity, DriverError> {
        let st = nix::sys::statvfs::statvfs(&self.dir)
            .map_err(|e| self.err("statvfs", format!("{}: {e}", self.dir.display())))?;
        let frag = st.fragment_size();
        let provisioned = self.list()?.iter().map(|i| i.size_bytes).sum();
        Ok(Capacity {
            total_bytes: st.blocks() * frag,
            free_bytes: st.blocks_available() * frag,
            provisioned_bytes: provisioned,
        })
    }

    fn list(&self) -> Result<Vec<ImageInfo>, DriverError> {
        use std::os::unix::fs::MetadataExt;
        let rd = std::fs::read_dir(&self.dir)
            .map_err(|e| self.err("list", format!("{}: {e}", self.dir.display())))?;
        let mut out = vec![];
        for entry in rd {
            let entry = entry.map_err(|e| self.err("list", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("volume-") || name.starts_with("snapshot-")) {
                continue;
            }
            let md = entry
                .metadata()
                .map_err(|e| self.err("stat", format!("{name}: {e}")))?;
            out.push(ImageInfo {
                name,
                size_bytes: md.len(),
                used_bytes: md.blocks() * 512,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
