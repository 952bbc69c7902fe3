//! Basalt's domain: collections and their fields, records, the filter language and access rules.
//!
//! Layout:
//! - [`schema`]: collection and field definitions as the PocketBase protocol spells them, and their validation.
//! - [`record`]: turning request bodies into typed column values and rows back into record JSON.
//! - [`filter`]: the filter/sort language, parsed once into an AST ([`filter::ast`]) and compiled to
//!   parameterised SQL for a [`sql::Dialect`] ([`filter::compile`]).
//! - [`sql`]: the dialect-neutral SQL builder and the [`sql::Value`] type that carries every value to the
//!   database as a bound parameter.
//! - [`id`], [`time`]: ids and the protocol's date format; [`net`]: IP networks of allow-lists.
//!
//! **Architecture Invariant:** this crate does no I/O and knows nothing of HTTP or of a database driver.
//! **Architecture Invariant:** a user-supplied value never becomes SQL text; only validated identifiers do.

pub mod codes;
pub mod error;
pub mod filter;
pub mod id;
pub mod net;
pub mod pii;
pub mod record;
pub mod schema;
pub mod sql;
pub mod time;

pub use error::{Error, FieldError, FieldErrors};
