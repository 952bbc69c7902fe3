//! The domain error type. The HTTP edge maps it to the protocol's `{status, message, data}` shape.

use std::collections::BTreeMap;

/// One field's validation failure, as the protocol reports it (`{"code","message","params"?}`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldError {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
}

impl FieldError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
            params: None,
        }
    }
    pub fn with_params(mut self, params: serde_json::Value) -> Self {
        self.params = Some(params);
        self
    }
    pub fn required() -> Self {
        Self::new(crate::codes::REQUIRED, "Cannot be blank.")
    }
}

/// Field errors keyed by field name (or a dotted path for nested values).
pub type FieldErrors = BTreeMap<String, FieldError>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Body validation failed: 400 with per-field errors.
    #[error("{message}")]
    Validation {
        message: String,
        fields: FieldErrors,
    },
    /// A malformed request (bad filter, bad sort, bad JSON): 400 with empty data.
    #[error("{0}")]
    BadRequest(String),
    /// The caller is authenticated but not allowed: 403.
    #[error("{0}")]
    Forbidden(String),
    /// Missing or bad authentication where it is required: 401.
    #[error("{0}")]
    Unauthorized(String),
    /// 404 with the given message.
    #[error("{0}")]
    NotFound(String),
    /// 429 with the message, answered with `Retry-After: <secs>` (at least 1).
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// A dependency the request needs is down or full (the database unreachable, its disk full):
    /// 503 with the message and `Retry-After`; nothing was written. Detail for the log stays here.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
        detail: String,
    },
    /// Anything else: logged, answered 500 with the generic message.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn validation(message: &str, fields: FieldErrors) -> Self {
        Error::Validation {
            message: message.to_string(),
            fields,
        }
    }
    pub fn field(message: &str, name: &str, err: FieldError) -> Self {
        let mut f = FieldErrors::new();
        f.insert(name.to_string(), err);
        Error::Validation {
            message: message.to_string(),
            fields: f,
        }
    }
    pub fn bad(msg: impl Into<String>) -> Self {
        Error::BadRequest(msg.into())
    }
    pub fn not_found() -> Self {
        Error::NotFound("The requested resource wasn't found.".into())
    }
    pub fn too_many(message: &str, retry_after: std::time::Duration) -> Self {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Error::TooManyRequests {
            message: message.to_string(),
            retry_after_secs: secs.max(1),
        }
    }
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Error::Internal(msg.to_string())
    }
}

impl Error {
    /// The error's kind in the code table: stable and transport-neutral. Each transport maps kinds to
    /// its own statuses in exactly one place (HTTP: `basalt-http`'s `error.rs`); field errors carry
    /// their own codes from [`crate::codes`].
    pub fn code(&self) -> &'static str {
        match self {
            Error::Validation { .. } => "validation_failed",
            Error::BadRequest(_) => "bad_request",
            Error::Forbidden(_) => "forbidden",
            Error::Unauthorized(_) => "unauthorized",
            Error::NotFound(_) => "not_found",
            Error::TooManyRequests { .. } => "too_many_requests",
            Error::Unavailable { .. } => "unavailable",
            Error::Internal(_) => "internal",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
