//! [`Tmpfs`]: a small private file system for tests of a full disk.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a given size mounted on a fresh temporary directory, unmounted on drop.
/// Mounting needs root, as CI has; anything else is a test failure with that reason.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `kib` KiB (mode 700).
    pub fn mount(kib: u32) -> Tmpfs {
        let dir = tempfile::tempdir().expect("temp dir");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "mounting a tmpfs failed: the full-disk tests need root (CI runs as root)"
        );
        Tmpfs { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// [`fill`] on this file system.
    pub fn fill(&self, leave: u64) -> PathBuf {
        fill(self.path(), leave)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the file system holding `dir` with a file in it until a write fails, then gives
/// back `leave` bytes (about: the file system counts in pages); returns the filler's path,
/// to remove when room is wanted again.
pub fn fill(dir: &Path, leave: u64) -> PathBuf {
    let filler = dir.join(format!("filler-{}", std::process::id()));
    let mut f = fs::File::create(&filler).expect("create the filler");
    let chunk = vec![0u8; 4096];
    let mut written = 0u64;
    // Bounded: a tmpfs of a few MiB fills long before this.
    while written < (1 << 30) {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    f.set_len(written.saturating_sub(leave))
        .expect("truncate the filler");
    let _ = f.sync_all();
    filler
}
