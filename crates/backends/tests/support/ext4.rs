//! An ext4 file system on a loop device, mounted by a test with
//! `errors=remount-ro`, that the test can turn read-only under an open
//! store the way a failing disk does: the kernel's own error path
//! (`/sys/fs/ext4/<dev>/trigger_fs_error`) remounts it read-only while
//! files stay open for writing (a plain `mount -o remount,ro` refuses
//! that: "mount point is busy"). It needs root, a loop device and
//! e2fsprogs, and fails loudly otherwise; it is unmounted on drop even
//! when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// An ext4 image mounted for one test.
pub(crate) struct Ext4 {
    image: PathBuf,
    mnt: PathBuf,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: running it failed: {e}"));
    assert!(
        out.status.success(),
        "{what} (this test needs root, a loop device and e2fsprogs): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Ext4 {
    /// Makes an ext4 image of `mib` MiB and mounts it on a new temp dir.
    pub(crate) fn mount(mib: u64) -> Ext4 {
        let images = tempfile::tempdir().expect("a temp dir for the image");
        let mnt = tempfile::tempdir().expect("a temp dir to mount on");
        let image = images.path().join("ext4.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(mib << 20))
            .expect("the image file");
        run(
            Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image),
            "mkfs.ext4",
        );
        let fs = Ext4 {
            image,
            mnt: mnt.path().to_path_buf(),
            _dirs: (images, mnt),
        };
        fs.mount_image();
        fs
    }

    fn mount_image(&self) {
        run(
            Command::new("mount")
                .args(["-o", "loop,errors=remount-ro"])
                .arg(&self.image)
                .arg(&self.mnt),
            "mounting an ext4 image on a loop device",
        );
    }

    /// Where it is mounted.
    pub(crate) fn path(&self) -> &Path {
        &self.mnt
    }

    /// Makes the kernel report a file system error, which remounts it
    /// read-only (`errors=remount-ro`); returns once a new file can no
    /// longer be created there.
    pub(crate) fn fail(&self) {
        let source = run(
            Command::new("findmnt")
                .args(["-n", "-o", "SOURCE", "--target"])
                .arg(&self.mnt),
            "findmnt",
        );
        let dev = source.rsplit('/').next().unwrap_or_default().to_string();
        std::fs::write(format!("/sys/fs/ext4/{dev}/trigger_fs_error"), "1")
            .expect("triggering an ext4 error through /sys/fs/ext4");
        for _ in 0..100 {
            let probe = self.mnt.join(".read-only-probe");
            match std::fs::File::create(&probe) {
                Err(e) if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem => return,
                _ => {
                    let _ = std::fs::remove_file(&probe);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        panic!("{} did not turn read-only", self.mnt.display());
    }

    /// Unmounts it, repairs it (`e2fsck -fy`) and mounts it again,
    /// writable: what an operator does after such an error.
    pub(crate) fn repair(&self) {
        umount(&self.mnt);
        let status = Command::new("e2fsck")
            .args(["-f", "-y"])
            .arg(&self.image)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("running e2fsck");
        // 0: clean, 1: errors corrected, 2: corrected, reboot advised.
        assert!(
            matches!(status.code(), Some(0..=2)),
            "e2fsck could not repair the image: {status}"
        );
        self.mount_image();
    }
}

/// Unmounts `mnt`, retrying while it is busy (a store just closed may
/// still be dropping its files on another thread).
fn umount(mnt: &Path) {
    for _ in 0..50 {
        if Command::new("umount")
            .arg(mnt)
            .status()
            .is_ok_and(|s| s.success())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("could not unmount {}", mnt.display());
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        // `mount -o loop` detaches the loop device when it is unmounted.
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}
