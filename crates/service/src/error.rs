//! The service's error: a domain error ([`basalt_core::Error`], whose variants are the code table's
//! kinds) plus the mapping of store failures into it. Transports turn it into their own wire shape in
//! exactly one place each (HTTP: `basalt-http::error`).

use basalt_core::Error;
use basalt_store::StoreError;

/// Every service function returns this error type.
#[derive(Debug)]
pub struct ServiceError(pub Error);

pub type ServiceResult<T> = Result<T, ServiceError>;

impl From<Error> for ServiceError {
    fn from(e: Error) -> Self {
        ServiceError(e)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unique { column, .. } => {
                let mut f = basalt_core::FieldErrors::new();
                f.insert(
                    column,
                    basalt_core::FieldError::new(
                        basalt_core::codes::NOT_UNIQUE,
                        "Value must be unique.",
                    ),
                );
                ServiceError(Error::validation("Failed to save record.", f))
            }
            StoreError::Timeout => ServiceError(Error::BadRequest(
                "The query took too long. Narrow the filter or add an index.".into(),
            )),
            StoreError::BadValue(m) => {
                tracing::debug!(detail = %m, "rejected value");
                ServiceError(Error::BadRequest(
                    "Something went wrong while processing your request.".into(),
                ))
            }
            StoreError::Unavailable(_) | StoreError::Connect(_) => {
                ServiceError(Error::Unavailable {
                    message: "The database is unavailable right now; try again shortly.".into(),
                    retry_after_secs: 1,
                    detail: e.to_string(),
                })
            }
            StoreError::DiskFull(_) => ServiceError(Error::Unavailable {
                message: "The server's disk is full: changes are refused until space is freed."
                    .into(),
                retry_after_secs: 30,
                detail: e.to_string(),
            }),
            other => ServiceError(Error::Internal(other.to_string())),
        }
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

pub fn bad(msg: &str) -> ServiceError {
    ServiceError(Error::BadRequest(msg.into()))
}
pub fn not_found() -> ServiceError {
    ServiceError(Error::not_found())
}
pub fn forbidden(msg: &str) -> ServiceError {
    ServiceError(Error::Forbidden(msg.into()))
}
pub fn unauthorized(msg: &str) -> ServiceError {
    ServiceError(Error::Unauthorized(msg.into()))
}
