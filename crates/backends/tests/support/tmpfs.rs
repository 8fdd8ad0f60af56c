//! A tmpfs mounted by a test (it needs root; it fails loudly otherwise),
//! unmounted on drop even when the test fails.

use std::path::Path;
use std::process::Command;

/// A tmpfs mounted for one test; unmounted (lazily) on drop.
pub(crate) struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `8m`) on a new temp dir.
    pub(crate) fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("a temp dir to mount on");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount(8)");
        assert!(
            out.status.success(),
            "this test must mount a {size} tmpfs on {} (it needs root): {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    /// Remounts it read-only (`mount -o remount,ro`).
    #[allow(dead_code)]
    /// Retries for a few seconds while it is busy (a store just dropped
    /// may still be closing its files on another thread).
    pub(crate) fn remount_read_only(&self) {
        let remount = || {
            Command::new("mount")
                .args(["-o", "remount,ro"])
                .arg(self.dir.path())
                .output()
                .expect("running mount(8)")
        };
        let mut out = remount();
        for _ in 0..50 {
            if out.status.success() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            out = remount();
        }
        assert!(
            out.status.success(),
            "remounting {} read-only: {}",
            self.dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Resizes it (`mount -o remount,size=…`), e.g. to free space.
    #[allow(dead_code)]
    pub(crate) fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .output()
            .expect("running mount(8)");
        assert!(
            out.status.success(),
            "resizing {} to {size}: {}",
            self.dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Where it is mounted.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
