//! The transport-neutral description of a caller: who (auth), from where (client IP after trusted
//! proxies, user agent), and the request facts rules may read (method, query, headers). Every
//! transport builds one per request; the service never sees a transport's own request type.

use std::net::IpAddr;

use basalt_core::filter::compile::RequestInfo;
use basalt_core::record::Data;
use serde_json::{Map, Value as Json};

use crate::caller::Caller;
use crate::error::{forbidden, unauthorized, ServiceResult};

#[derive(Clone)]
pub struct Req {
    /// The client's address: the socket peer, or the trusted proxy header's entry.
    pub ip: IpAddr,
    /// At most 300 characters.
    pub user_agent: String,
    /// The caller behind the token; `None` for a guest (a bad token makes a guest).
    pub auth: Option<Caller>,
    /// `GET`, `POST`, … as rules see it in `@request.method`.
    pub method: String,
    /// Where the request arrived (`/api/collections/posts/records`, `/api/graphql`): what path labels
    /// of rate-limit rules match.
    pub path: String,
    /// Query parameters (`filter`, `sort`, `expand`, `fields`, …), also `@request.query.*`.
    pub query: Map<String, Json>,
    /// Headers as `@request.headers.*` reads them (names lower-cased, `-` → `_`); transports fill
    /// this only when some rule or the filter reads headers (see `Collections::rules_read`).
    pub headers: Map<String, Json>,
}

impl Default for Req {
    fn default() -> Self {
        Req {
            ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            user_agent: String::new(),
            auth: None,
            method: "GET".into(),
            path: String::new(),
            query: Map::new(),
            headers: Map::new(),
        }
    }
}

impl Req {
    /// A request made by the server itself on behalf of `auth` (CLI commands, internal calls).
    pub fn internal(auth: Option<Caller>) -> Req {
        Req {
            auth,
            ..Default::default()
        }
    }

    /// A stable key of who asks, for per-caller limits: the authenticated record, or a guest's
    /// network ([`crate::limits::network_of`]).
    pub fn caller_key(&self) -> String {
        match &self.auth {
            Some(c) => format!("auth:{}:{}", c.collection.id, c.id()),
            None => format!("net:{}", crate::limits::network_of(self.ip)),
        }
    }

    pub fn is_superuser(&self) -> bool {
        self.auth.as_ref().is_some_and(Caller::is_superuser)
    }

    /// The guard of superuser-only operations (collections, settings, backups, …).
    pub fn require_superuser(&self) -> ServiceResult<()> {
        match &self.auth {
            None => Err(unauthorized(
                "The request requires valid record authorization token.",
            )),
            Some(c) if !c.is_superuser() => Err(forbidden(
                "The authorized record is not allowed to perform this action.",
            )),
            Some(_) => Ok(()),
        }
    }

    /// A query parameter's text ("" when absent).
    pub fn q(&self, k: &str) -> &str {
        self.query.get(k).and_then(Json::as_str).unwrap_or("")
    }

    /// A boolean query parameter (`1`, `true`, `t`).
    pub fn qbool(&self, k: &str) -> bool {
        matches!(self.q(k), "1" | "true" | "t" | "TRUE" | "True")
    }

    /// The facts rules and filters read (`@request.*`), with `body` as `@request.body`. Parts no rule
    /// of any collection and not the filter reads are left empty (`rules_read`).
    pub fn info(
        &self,
        cols: &crate::state::Collections,
        body: Option<&Data>,
        context: &str,
    ) -> RequestInfo {
        let filter = self.q("filter");
        let wanted = |i: usize, part: &str| cols.rules_read[i] || filter.contains(part);
        RequestInfo {
            auth: self
                .auth
                .as_ref()
                .map(|c| (c.collection.clone(), c.record.clone())),
            body: if wanted(2, "@request.body") {
                body.cloned().unwrap_or_default()
            } else {
                Data::new()
            },
            query: if wanted(1, "@request.query") {
                self.query.clone()
            } else {
                Map::new()
            },
            headers: if wanted(0, "@request.headers") {
                self.headers.clone()
            } else {
                Map::new()
            },
            method: self.method.clone(),
            context: context.to_string(),
            existing: None,
            route: format!("{} {}", self.method, self.path),
            ip: self.ip.to_string(),
            reason: self
                .headers
                .get("x_pii_reason")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string(),
        }
    }
}

/// A URL query string (without `?`) as a map; repeated keys keep the last value.
pub fn parse_query(raw: &str) -> Map<String, Json> {
    let mut m = Map::new();
    for p in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let dec = |x: &str| {
            percent_encoding::percent_decode_str(&x.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        m.insert(dec(k), Json::String(dec(v)));
    }
    m
}
