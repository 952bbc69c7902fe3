//! Files over HTTP: reading write bodies with streamed uploads ([`upload`]) and serving stored files
//! and thumbnails ([`serve`]). Storage itself is `basalt_service::files`.

pub mod serve;
pub mod upload;
