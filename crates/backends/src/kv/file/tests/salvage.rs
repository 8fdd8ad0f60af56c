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
    assert!(!names.contains(&name), "{names:?}");
    assert!(names.contains(&format!("{name}.lost")), "{names:?}");
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
