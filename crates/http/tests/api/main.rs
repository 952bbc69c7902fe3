//! Integration tests of the HTTP API: the real server on port 0, a fresh SQLite file or a fresh
//! PostgreSQL database per test. Every test runs on both backends (see [`both!`]).
//! Set `TEST_LOG=1` for server logs; `BASALT_TEST_PG` points at the Postgres server.

#![allow(clippy::unwrap_used)]

mod helpers;

mod auth;
mod authflows;
mod bad_input;
mod collections;
mod concurrency;
mod events;
mod files;
mod filters;
mod graphql;
mod metrics;
mod ops;
mod pii;
mod realtime;
mod records;
mod rules;
mod security;
mod servers;
mod service;
mod views;
