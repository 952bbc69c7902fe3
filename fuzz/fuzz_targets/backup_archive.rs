//! The backup archive reader of a restore (`backups::extract`): the input is the uploaded zip.
//! Invariants beyond "never panics": nothing is written outside the two destinations (`data.db`,
//! and `storage/` entries under the files folder, whatever `..` or absolute names the archive
//! holds), and an accepted archive did hold `data.db`.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn root() -> &'static PathBuf {
    static R: OnceLock<PathBuf> = OnceLock::new();
    R.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("basalt-fuzz-zip-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fn files_under(p: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                files_under(&path, out);
            } else {
                out.push(path);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let root = root();
    let _ = std::fs::remove_dir_all(root);
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let zip = root.join("upload.zip");
    std::fs::write(&zip, data).unwrap();
    let db = work.join("restore.db");
    let files = work.join("restore-files");
    let out = basalt_service::backups::extract(&zip, &db, &files);
    if out.is_ok() {
        assert!(db.is_file(), "accepted without data.db");
    }
    let mut written = vec![];
    files_under(root, &mut written);
    for p in written {
        assert!(
            p == zip || p == db || p.starts_with(&files),
            "wrote outside the restore's places: {}",
            p.display()
        );
    }
});
