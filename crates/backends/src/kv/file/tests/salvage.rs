//! After salvage: what it gave up is set aside, so the salvaged store
//! opens without salvage.

use super::super::checkpoint;
use super::super::vfs::Vfs;
use super::*;
use stowage_core::ErrorKind;

#[test]
fn a_salvaged_store_opens_plainly_with_its_damaged_checkpoint_set_aside() {
    let fs = SimFs::new();
    let mut model = Model::new();
    {
        let kv = open_sim(&fs, small_opts()).unwrap();
        for b in workload(21, 40) {
            kv.write(b.clone()).unwrap();
            apply_model(&mut model, &b);
        }
        kv.close().unwrap();
    }
    let name = checkpoint::file_name(40);
    let ckp = sim_dir().join(&name);
    fs.edit(&ckp, |d| d[20] ^= 1);
    let damaged = fs.contents(&ckp).unwrap();
    let err = open_sim(&fs, small_opts()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    {
        let salvage = FileOptions {
            salvage: true,
            ..small_opts()
        };
        let kv = open_sim(&fs, salvage).unwrap();
        let lost = &kv.recovery_report().lost;
        assert!(
            lost.iter()
                .any(|l| l.contains(&format!("set aside as {name}.lost"))),
            "{lost:?}"
        );
        assert_eq!(dump(&kv).unwrap(), model);
        let mut b = Batch::default();
        b.put(Table::Meta, b"after".to_vec(), b"salvage".to_vec());
        kv.write(b.clone()).unwrap();
        apply_model(&mut model, &b);
        // Dropped without a checkpoint (checkpoint_interval=0).
    }
    // The rename was made durable.
    fs.power_loss(None);
    let names = fs.list(&sim_dir()).unwrap();
    assert!(names.contains(&format!("{name}.lost")), "{names:?}");
    // The salvage's own checkpoint may have the same name (the same next
    // seq): it is not the damaged one.
    assert_ne!(fs.contents(&ckp), Some(damaged.clone()), "{names:?}");
    // Kept as it was, for inspection.
    let lost = sim_dir().join(format!("{name}.lost"));
    assert_eq!(fs.contents(&lost).unwrap(), damaged);
    let kv = open_sim(&fs, small_opts()).unwrap();
    assert!(kv.recovery_report().lost.is_empty());
    assert_eq!(dump(&kv).unwrap(), model);
    // Its next checkpoint leaves the set-aside one alone.
    kv.close().unwrap();
    drop(kv);
    assert_eq!(fs.contents(&lost).unwrap(), damaged);
    let kv = open_sim(&fs, small_opts()).unwrap();
    assert_eq!(dump(&kv).unwrap(), model);
}

/// Salvage that replays from the first segment left after missing ones
/// checkpoints at once: a plain open refused the store ("segment … is
/// missing") until some later checkpoint happened to be written.
#[test]
fn a_store_salvaged_past_missing_segments_opens_plainly() {
    let fs = SimFs::new();
    {
        let kv = open_sim(&fs, small_opts()).unwrap();
        for b in workload(5, 200) {
            kv.write(b).unwrap();
        }
        // Dropped without a checkpoint (checkpoint_interval=0).
    }
    let first = sim_dir().join(super::super::recovery::segment_name(1));
    let names = fs.list(&sim_dir()).unwrap();
    assert!(
        names.iter().filter(|n| n.ends_with(".wal")).count() >= 3,
        "{names:?}"
    );
    fs.remove(&first).unwrap();
    fs.sync_dir(&sim_dir()).unwrap();
    let err = open_sim(&fs, small_opts()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    let model = {
        let salvage = FileOptions {
            salvage: true,
            ..small_opts()
        };
        let kv = open_sim(&fs, salvage).unwrap();
        let lost = &kv.recovery_report().lost;
        assert!(lost.iter().any(|l| l.contains("missing")), "{lost:?}");
        dump(&kv).unwrap()
        // Dropped without writing anything.
    };
    fs.power_loss(None);
    let kv = open_sim(&fs, small_opts()).unwrap();
    assert!(kv.recovery_report().lost.is_empty());
    assert_eq!(dump(&kv).unwrap(), model);
}
