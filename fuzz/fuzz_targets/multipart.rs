//! The body reader of record writes, batch and backup uploads (`files::upload::read`): the first
//! line of the input is the multipart boundary (or `!json` / `!form` for those bodies), the rest
//! the body. Invariants beyond "never panics":
//! every kept file is within the per-file limit or marked truncated, and once the result is dropped
//! no temporary file is left behind, whether the body was accepted or refused.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

mod common;
use common::runtime;

const MAX_FILE: u64 = 4096;

fn tmp() -> &'static PathBuf {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("basalt-fuzz-mp-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(nl) = data.iter().position(|b| *b == b'\n') else {
        return;
    };
    // The first line picks the body's type: `!json`, `!form`, or else a multipart boundary.
    let first = String::from_utf8_lossy(&data[..nl]).trim().to_string();
    let content_type = match first.as_str() {
        "!json" => "application/json".to_string(),
        "!form" => "application/x-www-form-urlencoded".to_string(),
        boundary => format!("multipart/form-data; boundary={boundary}"),
    };
    let multipart = content_type.starts_with("multipart/");
    let Ok(req) = axum::http::Request::builder()
        .method("POST")
        .header("content-type", content_type)
        .body(axum::body::Body::from(data[nl + 1..].to_vec()))
    else {
        return;
    };
    let dir = tmp();
    let out = runtime().block_on(basalt_http::files::upload::read(
        dir,
        req,
        MAX_FILE,
        1 << 20,
    ));
    if let Ok(body) = &out {
        assert!(!multipart || body.json.is_object());
        for u in &body.uploads {
            assert!(u.truncated || u.size <= MAX_FILE, "kept {} bytes", u.size);
            assert!(u.path.starts_with(dir));
        }
    }
    drop(out);
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
});
