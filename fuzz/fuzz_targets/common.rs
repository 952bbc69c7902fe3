//! What the async targets share (not a target: each `[[bin]]` in Cargo.toml names its file).

use std::sync::OnceLock;

/// One current-thread runtime per fuzzing process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}
