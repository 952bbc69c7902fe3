//! The authenticated caller of a request: the auth record and its collection, as a token proved it.

use std::sync::Arc;

use basalt_core::record::Data;
use basalt_core::schema::Collection;
use serde_json::Value as Json;

/// The authenticated caller, if any.
#[derive(Clone)]
pub struct Caller {
    pub collection: Arc<Collection>,
    pub record: Data,
    pub refreshable: bool,
    pub token: String,
}

impl Caller {
    pub fn is_superuser(&self) -> bool {
        self.collection.is_superusers()
    }
    pub fn id(&self) -> &str {
        self.record.get("id").and_then(Json::as_str).unwrap_or("")
    }
}
