//! Embeds the dashboard's built assets (`ui/dist`, committed; `npm run build` in `ui/` makes them)
//! into the binary: writes `$OUT_DIR/dashboard_assets.rs`, a table of
//! `(path under /_/, bytes, gzipped bytes or empty, etag)`.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, base, out);
        } else if p.extension().is_none_or(|e| e != "gz") {
            out.push(p.strip_prefix(base).unwrap_or(&p).to_path_buf());
        }
    }
}

/// FNV-1a, 64 bits: an ETag that changes with the file's bytes.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let dist = manifest.join("../../ui/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    walk(&dist, &dist, &mut files);
    let mut src = String::from("pub static ASSETS: &[(&str, &[u8], &[u8], &str)] = &[\n");
    for rel in files {
        let abs = dist.join(&rel).canonicalize().expect("asset path");
        let bytes = std::fs::read(&abs).expect("read asset");
        let gz = abs.with_file_name(format!(
            "{}.gz",
            abs.file_name().and_then(|n| n.to_str()).unwrap_or_default()
        ));
        let gz_expr = if gz.is_file() {
            format!("include_bytes!({:?})", gz.display().to_string())
        } else {
            "b\"\"".to_string()
        };
        let key = rel.to_string_lossy().replace('\\', "/");
        let _ = writeln!(
            src,
            "    ({key:?}, include_bytes!({:?}), {gz_expr}, \"\\\"{:016x}\\\"\"),",
            abs.display().to_string(),
            fnv(&bytes)
        );
    }
    src.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("out dir")).join("dashboard_assets.rs");
    std::fs::write(out, src).expect("write asset table");
}
