//! The domain side of uploads: a received file part ([`Upload`], a temporary file the transport
//! wrote), the size ceiling of a collection's file fields, and [`attach`], which matches uploads to
//! file fields and checks them. Reading a request body into uploads is the transport's job.

use std::path::PathBuf;

use basalt_core::record::Data;
use basalt_core::schema::{Collection, FieldType};
use basalt_core::{FieldError, FieldErrors};
use serde_json::{json, Value as Json};

use crate::files::{mime_allowed, names, stored_name, DEFAULT_MAX_SIZE};

/// A received file part, in a temporary file that is removed when this is dropped (unless storage
/// took it over by renaming it).
pub struct Upload {
    /// The part's name as sent (`avatar`, `documents+`, `requests.0.doc`).
    pub part: String,
    /// The client's file name.
    pub original: String,
    pub path: PathBuf,
    /// Bytes sent (counted in full even past the limit, where the rest was discarded).
    pub size: u64,
    /// Sniffed from the content.
    pub mime: String,
    /// Whether the part was larger than the reader's ceiling (its content is incomplete).
    pub truncated: bool,
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The largest file any file field of these collections accepts: parts beyond it are not kept.
pub fn ceiling<'a>(colls: impl IntoIterator<Item = &'a Collection>) -> u64 {
    colls
        .into_iter()
        .flat_map(|c| c.fields.iter())
        .filter(|f| f.ty() == FieldType::File)
        .map(max_size)
        .max()
        .unwrap_or(0)
}

pub fn max_size(f: &basalt_core::schema::Field) -> u64 {
    if f.max_size > 0 {
        f.max_size as u64
    } else {
        DEFAULT_MAX_SIZE
    }
}

/// An upload accepted for a field, with the name it is stored under.
pub struct NewFile {
    pub field: String,
    pub name: String,
    pub upload: Upload,
}

/// Matches uploads to the collection's file fields (`f`, `f+`, `+f`), checks size and type, and adds
/// their stored names to the body under the key they came with: the plain key's text values are the
/// existing names to keep, so uploads join them. Parts naming no file field are ignored.
pub fn attach(
    coll: &Collection,
    body: &mut Data,
    uploads: Vec<Upload>,
    errs: &mut FieldErrors,
) -> Vec<NewFile> {
    let mut out = Vec::new();
    for up in uploads {
        let key = up.part.clone();
        let field = key.trim_start_matches('+').trim_end_matches(['+', '-']);
        if key.ends_with('-') {
            continue;
        }
        let Some(f) = coll.field(field).filter(|f| f.ty() == FieldType::File) else {
            continue;
        };
        let limit = max_size(f);
        if up.truncated || up.size > limit {
            errs.insert(
                f.name.clone(),
                FieldError::new(
                    basalt_core::codes::FILE_SIZE_LIMIT,
                    format!(
                        "Failed to upload {} - the maximum allowed file size is {limit} bytes.",
                        up.original
                    ),
                )
                .with_params(json!({"file": up.original, "maxSize": limit})),
            );
            continue;
        }
        let name = stored_name(&up.original, &up.mime);
        if !mime_allowed(&up.mime, &f.mime_types) {
            errs.insert(
                f.name.clone(),
                FieldError::new(
                    basalt_core::codes::INVALID_MIME_TYPE,
                    format!(
                        "\"{name}\" mime type must be one of: {}.",
                        f.mime_types.join(", ")
                    ),
                ),
            );
            continue;
        }
        let mut list = names(body.get(&key));
        list.push(name.clone());
        body.insert(
            key,
            Json::Array(list.into_iter().map(Json::String).collect()),
        );
        out.push(NewFile {
            field: f.name.clone(),
            name,
            upload: up,
        });
    }
    out
}
