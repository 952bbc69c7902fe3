//! Collections and fields, in the protocol's JSON shape, with validation of definitions.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};

use crate::error::{Error, FieldError, FieldErrors, Result};
use crate::id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CollectionType {
    #[default]
    Base,
    Auth,
    View,
}

impl CollectionType {
    pub fn as_str(self) -> &'static str {
        match self {
            CollectionType::Base => "base",
            CollectionType::Auth => "auth",
            CollectionType::View => "view",
        }
    }
}

/// Field types of the protocol (§9). `geoPoint` is accepted and stored as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FieldType {
    Text,
    Number,
    Bool,
    Email,
    Url,
    Editor,
    Date,
    Autodate,
    Select,
    Json,
    Relation,
    Password,
    File,
    GeoPoint,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Number => "number",
            FieldType::Bool => "bool",
            FieldType::Email => "email",
            FieldType::Url => "url",
            FieldType::Editor => "editor",
            FieldType::Date => "date",
            FieldType::Autodate => "autodate",
            FieldType::Select => "select",
            FieldType::Json => "json",
            FieldType::Relation => "relation",
            FieldType::Password => "password",
            FieldType::File => "file",
            FieldType::GeoPoint => "geoPoint",
        }
    }
}

/// How a field's value is stored in its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Text,
    Number,
    Bool,
    /// JSON (json fields, geoPoint, and multi-valued select/relation/file as arrays).
    Json,
}

/// The longest `pattern` or `autogeneratePattern` a text field may have (Basalt's bound; PocketBase
/// has none).
pub const MAX_PATTERN_LEN: usize = 1000;

/// The system id field's `autogeneratePattern` in PocketBase's collections.
pub const DEFAULT_ID_PATTERN: &str = "[a-z0-9]{15}";

/// The system id field's `pattern` in PocketBase's collections (PocketBase's
/// `defaultLowercaseRecordIdPattern`: with any other, a client's id must also avoid reserved names).
pub const DEFAULT_ID_FORMAT: &str = "^[a-z0-9]+$";

/// A field definition. Type-specific options live side by side; [`Field::to_json`] writes only those
/// that belong to the type, as the protocol does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Field {
    pub id: String,
    pub name: String,
    pub kind: Option<FieldType>,
    pub system: bool,
    pub hidden: bool,
    pub presentable: bool,
    pub required: bool,
    pub help: String,
    // text / password / editor
    pub min: Json,
    pub max: Json,
    pub pattern: String,
    pub autogenerate_pattern: String,
    pub primary_key: bool,
    pub cost: i64,
    pub max_size: i64,
    pub convert_urls: bool,
    // number
    pub only_int: bool,
    // email / url
    pub except_domains: Vec<String>,
    pub only_domains: Vec<String>,
    // autodate
    pub on_create: bool,
    pub on_update: bool,
    // select
    pub values: Vec<String>,
    pub max_select: i64,
    pub min_select: i64,
    // relation
    pub collection_id: String,
    pub cascade_delete: bool,
    // file
    pub mime_types: Vec<String>,
    pub thumbs: Vec<String>,
    pub protected: bool,
    /// PII protection ([`crate::pii`]): encrypted at rest, masked for callers failing `revealRule`.
    pub pii: Option<crate::pii::Pii>,
}

impl Field {
    pub fn ty(&self) -> FieldType {
        self.kind.unwrap_or(FieldType::Text)
    }

    pub fn new(name: &str, ty: FieldType) -> Self {
        Field {
            id: id::field_id(ty.as_str(), name),
            name: name.into(),
            kind: Some(ty),
            ..Default::default()
        }
    }

    /// Select, relation and file fields with maxSelect > 1 hold arrays.
    pub fn is_multiple(&self) -> bool {
        matches!(
            self.ty(),
            FieldType::Select | FieldType::Relation | FieldType::File
        ) && self.max_select > 1
    }

    pub fn column_kind(&self) -> ColumnKind {
        match self.ty() {
            FieldType::Number => ColumnKind::Number,
            FieldType::Bool => ColumnKind::Bool,
            FieldType::Json | FieldType::GeoPoint => ColumnKind::Json,
            _ if self.is_multiple() => ColumnKind::Json,
            _ => ColumnKind::Text,
        }
    }

    pub fn from_json(v: &Json) -> std::result::Result<Field, String> {
        let o = v.as_object().ok_or("must be an object")?;
        let s = |k: &str| o.get(k).and_then(Json::as_str).unwrap_or("").to_string();
        let b = |k: &str| o.get(k).and_then(Json::as_bool).unwrap_or(false);
        let i = |k: &str| {
            o.get(k)
                .and_then(Json::as_f64)
                .map(|f| f as i64)
                .unwrap_or(0)
        };
        let list = |k: &str| -> Vec<String> {
            o.get(k)
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let kind: FieldType = serde_json::from_value(o.get("type").cloned().unwrap_or(Json::Null))
            .map_err(|_| "invalid or missing field type".to_string())?;
        let mut f = Field {
            id: s("id"),
            name: s("name"),
            kind: Some(kind),
            system: b("system"),
            hidden: b("hidden"),
            presentable: b("presentable"),
            required: b("required"),
            help: s("help"),
            min: o.get("min").cloned().unwrap_or(Json::Null),
            max: o.get("max").cloned().unwrap_or(Json::Null),
            pattern: s("pattern"),
            autogenerate_pattern: s("autogeneratePattern"),
            primary_key: b("primaryKey"),
            cost: i("cost"),
            max_size: i("maxSize"),
            convert_urls: b("convertURLs"),
            only_int: b("onlyInt"),
            except_domains: list("exceptDomains"),
            only_domains: list("onlyDomains"),
            on_create: b("onCreate"),
            on_update: b("onUpdate"),
            values: list("values"),
            max_select: i("maxSelect"),
            min_select: i("minSelect"),
            collection_id: s("collectionId"),
            cascade_delete: b("cascadeDelete"),
            mime_types: list("mimeTypes"),
            thumbs: list("thumbs"),
            protected: b("protected"),
            pii: crate::pii::Pii::from_json(o.get("pii"))
                .map_err(|e| format!("{}: {e}", s("name")))?,
        };
        if f.id.is_empty() {
            f.id = id::field_id(kind.as_str(), &f.name);
        }
        Ok(f)
    }

    pub fn to_json(&self) -> Json {
        let mut o = Map::new();
        o.insert("hidden".into(), json!(self.hidden));
        o.insert("id".into(), json!(self.id));
        o.insert("name".into(), json!(self.name));
        o.insert("presentable".into(), json!(self.presentable));
        o.insert("system".into(), json!(self.system));
        o.insert("type".into(), json!(self.ty().as_str()));
        let num_or_zero = |v: &Json| if v.is_null() { json!(0) } else { v.clone() };
        match self.ty() {
            FieldType::Text => {
                o.insert(
                    "autogeneratePattern".into(),
                    json!(self.autogenerate_pattern),
                );
                o.insert("max".into(), num_or_zero(&self.max));
                o.insert("min".into(), num_or_zero(&self.min));
                o.insert("pattern".into(), json!(self.pattern));
                o.insert("primaryKey".into(), json!(self.primary_key));
                o.insert("required".into(), json!(self.required));
            }
            FieldType::Number => {
                o.insert("max".into(), self.max.clone());
                o.insert("min".into(), self.min.clone());
                o.insert("onlyInt".into(), json!(self.only_int));
                o.insert("required".into(), json!(self.required));
            }
            FieldType::Bool | FieldType::GeoPoint => {
                o.insert("required".into(), json!(self.required));
            }
            FieldType::Email | FieldType::Url => {
                o.insert("exceptDomains".into(), json!(self.except_domains));
                o.insert("onlyDomains".into(), json!(self.only_domains));
                o.insert("required".into(), json!(self.required));
            }
            FieldType::Editor => {
                o.insert("convertURLs".into(), json!(self.convert_urls));
                o.insert("maxSize".into(), json!(self.max_size));
                o.insert("required".into(), json!(self.required));
            }
            FieldType::Date => {
                let d = |v: &Json| if v.is_null() { json!("") } else { v.clone() };
                o.insert("max".into(), d(&self.max));
                o.insert("min".into(), d(&self.min));
                o.insert("required".into(), json!(self.required));
            }
            FieldType::Autodate => {
                o.insert("onCreate".into(), json!(self.on_create));
                o.insert("onUpdate".into(), json!(self.on_update));
            }
            FieldType::Select => {
                o.insert("maxSelect".into(), json!(self.max_select));
                o.insert("required".into(), json!(self.required));
                o.insert("values".into(), json!(self.values));
            }
            FieldType::Json => {
                o.insert("maxSize".into(), json!(self.max_size));
                o.insert("required".into(), json!(self.required));
            }
            FieldType::Relation => {
                o.insert("cascadeDelete".into(), json!(self.cascade_delete));
                o.insert("collectionId".into(), json!(self.collection_id));
                o.insert("maxSelect".into(), json!(self.max_select));
                o.insert("minSelect".into(), json!(self.min_select));
                o.insert("required".into(), json!(self.required));
            }
            FieldType::Password => {
                o.insert("cost".into(), json!(self.cost));
                o.insert("max".into(), num_or_zero(&self.max));
                o.insert("min".into(), num_or_zero(&self.min));
                o.insert("pattern".into(), json!(self.pattern));
                o.insert("required".into(), json!(self.required));
            }
            FieldType::File => {
                o.insert("maxSelect".into(), json!(self.max_select));
                o.insert("maxSize".into(), json!(self.max_size));
                o.insert("mimeTypes".into(), json!(self.mime_types));
                o.insert("protected".into(), json!(self.protected));
                o.insert("required".into(), json!(self.required));
                o.insert("thumbs".into(), json!(self.thumbs));
            }
        }
        if self.ty() != FieldType::Autodate {
            o.insert("help".into(), json!(self.help));
        }
        crate::pii::write_json(self, &mut o);
        Json::Object(o)
    }

    fn num(v: &Json) -> Option<f64> {
        v.as_f64()
    }
    pub fn min_num(&self) -> Option<f64> {
        Self::num(&self.min)
    }
    pub fn max_num(&self) -> Option<f64> {
        Self::num(&self.max)
    }
}

/// Per-token-type settings of an auth collection (`{duration}` out, secret kept inside).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenConfig {
    pub duration: i64,
    pub secret: String,
}

/// Auth-collection options (§9).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthOptions {
    pub auth_rule: Option<String>,
    pub manage_rule: Option<String>,
    pub password_identity_fields: Vec<String>,
    pub password_enabled: bool,
    pub auth_token: TokenConfig,
    pub password_reset_token: TokenConfig,
    pub email_change_token: TokenConfig,
    pub verification_token: TokenConfig,
    pub file_token: TokenConfig,
    /// Options we store and echo but whose features arrive with later issues (oauth2, mfa, otp,
    /// authAlert, templates).
    pub extra: Map<String, Json>,
}

impl AuthOptions {
    pub fn defaults(superusers: bool) -> Self {
        let t = |d: i64| TokenConfig {
            duration: d,
            secret: id::random_id(50),
        };
        AuthOptions {
            auth_rule: Some(String::new()),
            manage_rule: None,
            password_identity_fields: vec!["email".into()],
            password_enabled: true,
            auth_token: t(if superusers { 86400 } else { 432000 }),
            password_reset_token: t(1800),
            email_change_token: t(1800),
            verification_token: t(86400),
            file_token: t(180),
            extra: default_auth_extra(),
        }
    }
}

fn default_auth_extra() -> Map<String, Json> {
    let v = json!({
        "authAlert": {"enabled": true, "emailTemplate": {"subject": "Login from a new location", "body": ""}},
        "oauth2": {"enabled": false, "mappedFields": {"id": "", "name": "", "username": "", "avatarURL": ""}, "providers": []},
        "mfa": {"enabled": false, "duration": 600, "rule": ""},
        "otp": {"enabled": false, "duration": 180, "length": 8, "emailTemplate": {"subject": "OTP for {APP_NAME}", "body": ""}},
        "verificationTemplate": {"subject": "Verify your {APP_NAME} email", "body": ""},
        "resetPasswordTemplate": {"subject": "Reset your {APP_NAME} password", "body": ""},
        "confirmEmailChangeTemplate": {"subject": "Confirm your {APP_NAME} new email address", "body": ""}
    });
    match v {
        Json::Object(m) => m,
        _ => Map::new(),
    }
}

/// After an `oauth2` update: a provider sent without `clientSecret` keeps the stored one (clients
/// never see it, so they cannot send it back); each provider needs a name and a clientId.
fn keep_client_secrets(dst: &mut Map<String, Json>, old: Option<&Json>, errs: &mut FieldErrors) {
    let Some(list) = dst.get_mut("providers").and_then(Json::as_array_mut) else {
        return;
    };
    for (i, p) in list.iter_mut().enumerate() {
        let Some(p) = p.as_object_mut() else {
            errs.insert(
                format!("oauth2.providers.{i}"),
                FieldError::new(crate::codes::INVALID_VALUE, "Invalid provider."),
            );
            continue;
        };
        let name = p
            .get("name")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            errs.insert(format!("oauth2.providers.{i}.name"), FieldError::required());
        }
        if p.get("clientId")
            .and_then(Json::as_str)
            .unwrap_or("")
            .is_empty()
        {
            errs.insert(
                format!("oauth2.providers.{i}.clientId"),
                FieldError::required(),
            );
        }
        let has_secret = p
            .get("clientSecret")
            .and_then(Json::as_str)
            .is_some_and(|s| !s.is_empty());
        if !has_secret {
            let prev = old
                .and_then(Json::as_array)
                .and_then(|a| a.iter().find(|o| o["name"].as_str() == Some(name.as_str())))
                .and_then(|o| o.get("clientSecret"))
                .cloned();
            if let Some(sec) = prev {
                p.insert("clientSecret".into(), sec);
            }
        }
    }
}

/// A collection definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Collection {
    pub id: String,
    pub name: String,
    pub kind: CollectionType,
    pub system: bool,
    pub fields: Vec<Field>,
    pub indexes: Vec<String>,
    pub list_rule: Option<String>,
    pub view_rule: Option<String>,
    pub create_rule: Option<String>,
    pub update_rule: Option<String>,
    pub delete_rule: Option<String>,
    pub auth: Option<AuthOptions>,
    pub created: String,
    pub updated: String,
    /// A view collection's `SELECT` (its fields are inferred from it).
    pub view_query: String,
}

pub const AUTH_SYSTEM_FIELDS: [&str; 6] = [
    "id",
    "password",
    "tokenKey",
    "email",
    "emailVisibility",
    "verified",
];

impl Collection {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
    pub fn is_auth(&self) -> bool {
        self.kind == CollectionType::Auth
    }
    pub fn is_superusers(&self) -> bool {
        self.name == "_superusers"
    }
    /// Whether any field holds files.
    pub fn has_files(&self) -> bool {
        self.fields.iter().any(|f| f.ty() == FieldType::File)
    }

    /// The id field every collection starts with.
    pub fn id_field() -> Field {
        let mut f = Field::new("id", FieldType::Text);
        f.id = "text3208210256".into();
        f.system = true;
        f.primary_key = true;
        f.required = true;
        f.min = json!(15);
        f.max = json!(15);
        f.pattern = DEFAULT_ID_FORMAT.into();
        f.autogenerate_pattern = DEFAULT_ID_PATTERN.into();
        f
    }

    pub fn autodate_fields() -> [Field; 2] {
        let mut c = Field::new("created", FieldType::Autodate);
        c.on_create = true;
        let mut u = Field::new("updated", FieldType::Autodate);
        u.on_create = true;
        u.on_update = true;
        [c, u]
    }

    pub fn auth_system_fields() -> Vec<Field> {
        let mut pw = Field::new("password", FieldType::Password);
        pw.system = true;
        pw.hidden = true;
        pw.required = true;
        pw.min = json!(8);
        pw.cost = 0;
        let mut tk = Field::new("tokenKey", FieldType::Text);
        tk.system = true;
        tk.hidden = true;
        tk.required = true;
        tk.min = json!(30);
        tk.max = json!(60);
        tk.autogenerate_pattern = "[a-zA-Z0-9]{50}".into();
        let mut em = Field::new("email", FieldType::Email);
        em.system = true;
        em.required = true;
        let mut ev = Field::new("emailVisibility", FieldType::Bool);
        ev.system = true;
        let mut ve = Field::new("verified", FieldType::Bool);
        ve.system = true;
        vec![pw, tk, em, ev, ve]
    }

    /// A new collection of the given type with its system fields, as the scaffolds show it.
    pub fn scaffold(kind: CollectionType, name: &str) -> Collection {
        let mut fields = vec![Self::id_field()];
        let mut auth = None;
        if kind == CollectionType::Auth {
            fields.extend(Self::auth_system_fields());
            auth = Some(AuthOptions::defaults(name == "_superusers"));
        }
        let mut c = Collection {
            id: String::new(),
            name: name.into(),
            kind,
            system: false,
            fields,
            indexes: vec![],
            list_rule: None,
            view_rule: None,
            create_rule: None,
            update_rule: None,
            delete_rule: None,
            auth,
            created: String::new(),
            updated: String::new(),
            view_query: String::new(),
        };
        if kind == CollectionType::Auth {
            c.indexes = c.default_auth_indexes();
        }
        c
    }

    pub fn default_auth_indexes(&self) -> Vec<String> {
        let n = &self.name;
        vec![
            format!(
                "CREATE UNIQUE INDEX `idx_tokenKey_{}` ON `{n}` (`tokenKey`)",
                self.id_or_name_hash()
            ),
            format!(
                "CREATE UNIQUE INDEX `idx_email_{}` ON `{n}` (`email`) WHERE `email` != ''",
                self.id_or_name_hash()
            ),
        ]
    }

    /// Index names carry the collection id (a random suffix while there is none yet, as in scaffolds).
    fn id_or_name_hash(&self) -> String {
        if self.id.is_empty() {
            id::random_id(10)
        } else {
            self.id.clone()
        }
    }

    pub fn to_json(&self) -> Json {
        let mut o = Map::new();
        o.insert("createRule".into(), json!(self.create_rule));
        o.insert("created".into(), json!(self.created));
        o.insert("deleteRule".into(), json!(self.delete_rule));
        o.insert(
            "fields".into(),
            Json::Array(self.fields.iter().map(Field::to_json).collect()),
        );
        o.insert("id".into(), json!(self.id));
        o.insert("indexes".into(), json!(self.indexes));
        o.insert("listRule".into(), json!(self.list_rule));
        o.insert("name".into(), json!(self.name));
        o.insert("system".into(), json!(self.system));
        o.insert("type".into(), json!(self.kind.as_str()));
        o.insert("updateRule".into(), json!(self.update_rule));
        o.insert("updated".into(), json!(self.updated));
        o.insert("viewRule".into(), json!(self.view_rule));
        if self.kind == CollectionType::View {
            o.insert("viewQuery".into(), json!(self.view_query));
        }
        if let Some(a) = &self.auth {
            o.insert("authRule".into(), json!(a.auth_rule));
            o.insert("manageRule".into(), json!(a.manage_rule));
            o.insert(
                "passwordAuth".into(),
                json!({"enabled": a.password_enabled, "identityFields": a.password_identity_fields}),
            );
            for (k, t) in [
                ("authToken", &a.auth_token),
                ("passwordResetToken", &a.password_reset_token),
                ("emailChangeToken", &a.email_change_token),
                ("verificationToken", &a.verification_token),
                ("fileToken", &a.file_token),
            ] {
                o.insert(k.into(), json!({"duration": t.duration}));
            }
            for (k, v) in &a.extra {
                o.insert(k.clone(), v.clone());
            }
            // Provider client secrets are kept but never output.
            if let Some(ps) = o
                .get_mut("oauth2")
                .and_then(|x| x.get_mut("providers"))
                .and_then(Json::as_array_mut)
            {
                for p in ps.iter_mut().filter_map(Json::as_object_mut) {
                    p.remove("clientSecret");
                }
            }
        }
        Json::Object(o)
    }

    /// The full definition for storage, secrets included.
    pub fn to_storage_json(&self) -> Json {
        let mut v = self.to_json();
        if let (Some(a), Some(o)) = (&self.auth, v.as_object_mut()) {
            for (k, t) in [
                ("authToken", &a.auth_token),
                ("passwordResetToken", &a.password_reset_token),
                ("emailChangeToken", &a.email_change_token),
                ("verificationToken", &a.verification_token),
                ("fileToken", &a.file_token),
            ] {
                o.insert(
                    k.into(),
                    json!({"duration": t.duration, "secret": t.secret}),
                );
            }
            if let Some(oa) = a.extra.get("oauth2") {
                o.insert("oauth2".into(), oa.clone());
            }
        }
        v
    }

    /// Reads a stored definition (trusted; written by [`Collection::to_storage_json`]).
    pub fn from_storage_json(v: &Json) -> Result<Collection> {
        let mut c = Collection::scaffold(CollectionType::Base, "");
        c.apply_json(v, true)
            .map_err(|e| Error::internal(format!("stored collection: {e:?}")))?;
        Ok(c)
    }

    /// Applies a create/update body onto this definition. `trusted` allows secrets and system flags.
    /// Returns field-level errors in the protocol's shape.
    pub fn apply_json(&mut self, v: &Json, trusted: bool) -> std::result::Result<(), FieldErrors> {
        let mut errs = FieldErrors::new();
        let Some(o) = v.as_object() else {
            errs.insert(
                "".into(),
                FieldError::new(crate::codes::INVALID_BODY, "Invalid body."),
            );
            return Err(errs);
        };
        if let Some(n) = o.get("name") {
            match n.as_str() {
                Some(s) => self.name = s.to_string(),
                None => {
                    errs.insert(
                        "name".into(),
                        FieldError::new(crate::codes::INVALID_NAME, "Must be a string."),
                    );
                }
            }
        }
        if let Some(t) = o.get("type") {
            match serde_json::from_value::<CollectionType>(t.clone()) {
                Ok(k) => {
                    if k != self.kind {
                        if k == CollectionType::Auth && self.auth.is_none() {
                            self.auth = Some(AuthOptions::defaults(false));
                            for f in Self::auth_system_fields() {
                                if self.field(&f.name).is_none() {
                                    self.fields.push(f);
                                }
                            }
                        }
                        self.kind = k;
                    }
                }
                Err(_) => {
                    errs.insert(
                        "type".into(),
                        FieldError::new(crate::codes::IN_INVALID, "Must be a valid value."),
                    );
                }
            }
        }
        if trusted {
            if let Some(s) = o.get("id").and_then(Json::as_str) {
                self.id = s.into();
            }
            if let Some(s) = o.get("system").and_then(Json::as_bool) {
                self.system = s;
            }
            if let Some(s) = o.get("created").and_then(Json::as_str) {
                self.created = s.into();
            }
            if let Some(s) = o.get("updated").and_then(Json::as_str) {
                self.updated = s.into();
            }
        } else if let Some(s) = o.get("id").and_then(Json::as_str) {
            if self.id.is_empty() && !s.is_empty() {
                if id::is_valid_name(s) {
                    self.id = s.into();
                } else {
                    errs.insert(
                        "id".into(),
                        FieldError::new(crate::codes::INVALID_ID, "Invalid id."),
                    );
                }
            }
        }
        for (key, slot) in [
            ("listRule", &mut self.list_rule),
            ("viewRule", &mut self.view_rule),
            ("createRule", &mut self.create_rule),
            ("updateRule", &mut self.update_rule),
            ("deleteRule", &mut self.delete_rule),
        ] {
            if let Some(r) = o.get(key) {
                match r {
                    Json::Null => *slot = None,
                    Json::String(s) => *slot = Some(s.clone()),
                    _ => {
                        errs.insert(
                            key.into(),
                            FieldError::new(
                                crate::codes::INVALID_RULE,
                                "Must be a string or null.",
                            ),
                        );
                    }
                }
            }
        }
        if let Some(q) = o.get("viewQuery") {
            match q.as_str() {
                Some(q) => self.view_query = q.trim().to_string(),
                None => {
                    errs.insert(
                        "viewQuery".into(),
                        FieldError::new(crate::codes::INVALID_VIEW_QUERY, "Must be a string."),
                    );
                }
            }
        }
        if let Some(ix) = o.get("indexes") {
            match ix.as_array() {
                Some(a) if a.iter().all(Json::is_string) => {
                    self.indexes = a
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect();
                }
                _ => {
                    errs.insert(
                        "indexes".into(),
                        FieldError::new(
                            crate::codes::INVALID_INDEXES,
                            "Must be a list of strings.",
                        ),
                    );
                }
            }
        }
        if let Some(fs) = o.get("fields") {
            match fs.as_array() {
                Some(arr) => {
                    let mut new_fields = Vec::with_capacity(arr.len());
                    for (i, fv) in arr.iter().enumerate() {
                        match Field::from_json(fv) {
                            Ok(mut f) => {
                                // Keep the field id stable on rename: match by id first, then by name.
                                let given_id = fv.get("id").and_then(Json::as_str).unwrap_or("");
                                let existing = if given_id.is_empty() {
                                    self.fields.iter().find(|x| x.name == f.name)
                                } else {
                                    self.fields.iter().find(|x| x.id == given_id)
                                };
                                if let Some(ex) = existing {
                                    f.id = ex.id.clone();
                                    if ex.system && !trusted {
                                        f.system = true;
                                    }
                                }
                                new_fields.push(f);
                            }
                            Err(e) => {
                                errs.insert(
                                    format!("fields.{i}"),
                                    FieldError::new(
                                        crate::codes::INVALID_FIELD,
                                        format!("Invalid field: {e}."),
                                    ),
                                );
                            }
                        }
                    }
                    // A name given twice: the last definition wins, at the first one's place.
                    let mut deduped: Vec<Field> = Vec::with_capacity(new_fields.len());
                    for f in new_fields {
                        match deduped.iter_mut().find(|x| x.name == f.name) {
                            Some(slot) => *slot = f,
                            None => deduped.push(f),
                        }
                    }
                    let mut new_fields = deduped;
                    if errs.is_empty() {
                        // System fields cannot be removed by a client: keep them where they were.
                        if !trusted {
                            for (pos, ex) in self.fields.iter().enumerate() {
                                if ex.system
                                    && !new_fields
                                        .iter()
                                        .any(|f| f.id == ex.id || f.name == ex.name)
                                {
                                    new_fields.insert(pos.min(new_fields.len()), ex.clone());
                                }
                            }
                        }
                        if !new_fields.iter().any(|f| f.name == "id") {
                            new_fields.insert(0, Self::id_field());
                        }
                        self.fields = new_fields;
                    }
                }
                None => {
                    errs.insert(
                        "fields".into(),
                        FieldError::new(crate::codes::INVALID_FIELDS, "Must be a list of fields."),
                    );
                }
            }
        }
        if let Some(a) = self.auth.as_mut() {
            for (key, slot) in [
                ("authRule", &mut a.auth_rule),
                ("manageRule", &mut a.manage_rule),
            ] {
                if let Some(r) = o.get(key) {
                    match r {
                        Json::Null => *slot = None,
                        Json::String(s) => *slot = Some(s.clone()),
                        _ => {
                            errs.insert(
                                key.into(),
                                FieldError::new(
                                    crate::codes::INVALID_RULE,
                                    "Must be a string or null.",
                                ),
                            );
                        }
                    }
                }
            }
            if let Some(pa) = o.get("passwordAuth").and_then(Json::as_object) {
                if let Some(e) = pa.get("enabled").and_then(Json::as_bool) {
                    a.password_enabled = e;
                }
                if let Some(l) = pa.get("identityFields").and_then(Json::as_array) {
                    a.password_identity_fields = l
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect();
                }
            }
            for (k, t) in [
                ("authToken", &mut a.auth_token),
                ("passwordResetToken", &mut a.password_reset_token),
                ("emailChangeToken", &mut a.email_change_token),
                ("verificationToken", &mut a.verification_token),
                ("fileToken", &mut a.file_token),
            ] {
                if let Some(tv) = o.get(k).and_then(Json::as_object) {
                    if let Some(d) = tv.get("duration").and_then(Json::as_i64) {
                        t.duration = d;
                    }
                    if let Some(s) = tv.get("secret").and_then(Json::as_str) {
                        if trusted || s.len() >= 30 {
                            t.secret = s.to_string();
                        }
                    }
                }
            }
            for k in [
                "authAlert",
                "oauth2",
                "mfa",
                "otp",
                "verificationTemplate",
                "resetPasswordTemplate",
                "confirmEmailChangeTemplate",
            ] {
                if let Some(v) = o.get(k) {
                    if let (Some(dst), Some(src)) = (
                        a.extra.get_mut(k).and_then(Json::as_object_mut),
                        v.as_object(),
                    ) {
                        let old_providers = dst.get("providers").cloned();
                        for (kk, vv) in src {
                            dst.insert(kk.clone(), vv.clone());
                        }
                        if k == "oauth2" {
                            keep_client_secrets(dst, old_providers.as_ref(), &mut errs);
                        }
                    }
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// Validates a definition. `others` are the other collections (for name uniqueness and relations).
    pub fn validate(
        &self,
        others: &[std::sync::Arc<Collection>],
    ) -> std::result::Result<(), FieldErrors> {
        let mut errs = FieldErrors::new();
        if self.name.is_empty() {
            errs.insert("name".into(), FieldError::required());
        } else if self.name.chars().count() > 255 {
            errs.insert(
                "name".into(),
                FieldError::new(
                    crate::codes::LENGTH_OUT_OF_RANGE,
                    "The length must be between 1 and 255.",
                )
                .with_params(serde_json::json!({"min": 1, "max": 255})),
            );
        } else if !id::is_valid_name(&self.name) {
            errs.insert(
                "name".into(),
                FieldError::new(crate::codes::MATCH_INVALID, "Must be in a valid format."),
            );
        } else if others
            .iter()
            .any(|c| c.id != self.id && c.name.eq_ignore_ascii_case(&self.name))
        {
            errs.insert(
                "name".into(),
                FieldError::new(
                    crate::codes::COLLECTION_NAME_EXISTS,
                    "Collection name must be unique (case insensitive).",
                ),
            );
        }
        if self.kind == CollectionType::View && self.view_query.is_empty() {
            errs.insert("viewQuery".into(), FieldError::required());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, f) in self.fields.iter().enumerate() {
            let key = format!("fields.{i}.name");
            if f.name.is_empty() {
                errs.insert(key, FieldError::required());
                continue;
            }
            if !id::is_valid_name(&f.name) {
                errs.insert(
                    key,
                    FieldError::new(crate::codes::MATCH_INVALID, "Must be in a valid format."),
                );
                continue;
            }
            if !seen.insert(f.name.to_ascii_lowercase()) {
                errs.insert(
                    key,
                    FieldError::new(
                        crate::codes::DUPLICATED_FIELD_NAME,
                        "Duplicated or invalid field name.",
                    ),
                );
                continue;
            }
            if f.name == "expand" || f.name == "collectionId" || f.name == "collectionName" {
                errs.insert(
                    key,
                    FieldError::new(crate::codes::NOT_IN_INVALID, "Must be a valid value."),
                );
                continue;
            }
            match f.ty() {
                FieldType::Relation => {
                    let target_ok = f.collection_id == self.id
                        || others
                            .iter()
                            .any(|c| c.id == f.collection_id || c.name == f.collection_id);
                    if f.collection_id.is_empty() || !target_ok {
                        errs.insert(
                            format!("fields.{i}.collectionId"),
                            FieldError::new(
                                crate::codes::FIELD_RELATION_MISSING_COLLECTION,
                                "The relation collection doesn't exist.",
                            ),
                        );
                    }
                }
                FieldType::Select if f.values.is_empty() => {
                    errs.insert(format!("fields.{i}.values"), FieldError::required());
                }
                FieldType::Autodate if !f.on_create && !f.on_update => {
                    errs.insert(format!("fields.{i}.onCreate"), FieldError::required());
                    errs.insert(format!("fields.{i}.onUpdate"), FieldError::required());
                }
                _ => {}
            }
            if let Some(p) = &f.pii {
                let why = if !crate::pii::supported(f.ty()) {
                    Some(format!(
                        "A {} field cannot be marked pii (text, email, number, date, json and editor fields can).",
                        f.ty().as_str()
                    ))
                } else if f.name == "id" || f.primary_key {
                    Some("The id field cannot be marked pii.".to_string())
                } else if p.fpe_digits && f.ty() != FieldType::Text {
                    Some("fpe \"digits\" applies to text fields (identifiers such as card or account numbers).".to_string())
                } else if !id::is_valid_name(&f.id) {
                    Some("A pii field needs an id of letters, digits and underscores.".to_string())
                } else {
                    p.reveal_rule
                        .as_ref()
                        .filter(|r| !r.trim().is_empty())
                        .and_then(|r| crate::filter::parse(r).err())
                        .map(|e| format!("Invalid revealRule. Raw error: {e}."))
                };
                if let Some(why) = why {
                    errs.insert(
                        format!("fields.{i}.pii"),
                        FieldError::new(crate::codes::INVALID_PII, why),
                    );
                }
            }
            let too_long = || FieldError::new(crate::codes::INVALID_PATTERN, "Pattern too long.");
            let unparsable = |e: String| {
                FieldError::new(
                    crate::codes::INVALID_REGEX,
                    format!("Error parsing regexp: {}.", e.trim_end_matches('.')),
                )
            };
            let pattern_error = if f.pattern.len() > MAX_PATTERN_LEN {
                Some(too_long())
            } else if f.pattern.is_empty() {
                None
            } else {
                crate::record::text_pattern(&f.pattern)
                    .err()
                    .map(unparsable)
            };
            if let Some(e) = pattern_error {
                errs.insert(format!("fields.{i}.pattern"), e);
            }
            if f.ty() == FieldType::Text && !f.autogenerate_pattern.is_empty() {
                // As PocketBase: the pattern must parse, and ten values made from it must be valid.
                let p = &f.autogenerate_pattern;
                let e = if p.len() > MAX_PATTERN_LEN {
                    Some(too_long())
                } else {
                    (0..10).find_map(|_| match crate::record::autogenerate(p) {
                        Err(e) => Some(unparsable(e)),
                        Ok(sample) => crate::record::validate_value(f, &Json::String(sample.clone()))
                            .is_err()
                            .then(|| FieldError::new(
                                crate::codes::INVALID_AUTOGENERATE_PATTERN_VALUE,
                                format!("The provided autogenerate pattern could produce invalid field values, ex.: {sample:?}."),
                            )),
                    })
                };
                if let Some(e) = e {
                    errs.insert(format!("fields.{i}.autogeneratePattern"), e);
                }
            }
        }
        if self.field("id").is_none() {
            errs.insert(
                "fields".into(),
                FieldError::new(crate::codes::MISSING_ID, "The id field is required."),
            );
        }
        if self.is_auth() {
            for n in AUTH_SYSTEM_FIELDS {
                if self.field(n).is_none() {
                    errs.insert(
                        "fields".into(),
                        FieldError::new(
                            crate::codes::MISSING_SYSTEM_FIELD,
                            format!("Missing system field \"{n}\"."),
                        ),
                    );
                }
            }
        }
        for (i, r) in [
            &self.list_rule,
            &self.view_rule,
            &self.create_rule,
            &self.update_rule,
            &self.delete_rule,
        ]
        .iter()
        .enumerate()
        {
            if let Some(rule) = r.as_ref().filter(|r| !r.trim().is_empty()) {
                if let Err(e) = crate::filter::parse(rule) {
                    let key = [
                        "listRule",
                        "viewRule",
                        "createRule",
                        "updateRule",
                        "deleteRule",
                    ][i];
                    errs.insert(
                        key.into(),
                        FieldError::new(
                            crate::codes::INVALID_RULE,
                            format!("Invalid rule. Raw error: {e}."),
                        ),
                    );
                }
            }
        }
        for (i, ix) in self.indexes.iter().enumerate() {
            if let Err(e) = Index::parse(ix) {
                errs.insert(
                    format!("indexes.{i}"),
                    FieldError::new(crate::codes::INVALID_INDEX_EXPRESSION, e),
                );
            } else if let Ok(p) = Index::parse(ix) {
                for c in &p.columns {
                    let why = match self.field(c) {
                        None => Some(format!("Unknown column \"{c}\".")),
                        Some(f) if f.pii.as_ref().is_some_and(|p| !p.searchable) => Some(format!(
                            "\"{c}\" is encrypted (pii) without a blind index: set pii.searchable to index it."
                        )),
                        Some(f) if f.pii.is_some() && p.columns.len() > 1 => Some(format!(
                            "\"{c}\" is encrypted (pii): its index must cover that field alone."
                        )),
                        _ => None,
                    };
                    if let Some(why) = why {
                        errs.insert(
                            format!("indexes.{i}"),
                            FieldError::new(crate::codes::INVALID_INDEX_EXPRESSION, why),
                        );
                    }
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

/// A parsed index definition. Only the safe subset is accepted: a name, plain column list with optional
/// ASC/DESC and COLLATE NOCASE, UNIQUE, and the auth collections' `WHERE col != ''` partial form.
/// The SQL sent to the database is regenerated from this, never passed through.
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    pub name: String,
    pub unique: bool,
    pub columns: Vec<String>,
    pub desc: Vec<bool>,
    pub where_not_empty: Option<String>,
}

impl Index {
    pub fn parse(sql: &str) -> std::result::Result<Index, String> {
        let toks: Vec<String> = tokenize_index(sql);
        let mut i = 0;
        let kw = |t: &str, w: &str| t.eq_ignore_ascii_case(w);
        let get = |i: usize| toks.get(i).map(String::as_str).unwrap_or("");
        if !kw(get(i), "CREATE") {
            return Err("Index must start with CREATE.".into());
        }
        i += 1;
        let unique = kw(get(i), "UNIQUE");
        if unique {
            i += 1;
        }
        if !kw(get(i), "INDEX") {
            return Err("Expected INDEX.".into());
        }
        i += 1;
        if kw(get(i), "IF") {
            i += 3;
        }
        let name = get(i).to_string();
        if !id::is_valid_name(&name) {
            return Err("Invalid index name.".into());
        }
        i += 1;
        if !kw(get(i), "ON") {
            return Err("Expected ON.".into());
        }
        i += 2; // table name: always the collection's own table
        if get(i) != "(" {
            return Err("Expected a column list.".into());
        }
        i += 1;
        let mut columns = vec![];
        let mut desc = vec![];
        loop {
            let c = get(i).to_string();
            if !id::is_valid_name(&c) {
                return Err("Invalid column in index.".into());
            }
            columns.push(c);
            i += 1;
            let mut d = false;
            loop {
                let t = get(i);
                if kw(t, "ASC") {
                    i += 1;
                } else if kw(t, "DESC") {
                    d = true;
                    i += 1;
                } else if kw(t, "COLLATE") {
                    i += 2;
                } else {
                    break;
                }
            }
            desc.push(d);
            match get(i) {
                "," => i += 1,
                ")" => {
                    i += 1;
                    break;
                }
                _ => return Err("Malformed column list.".into()),
            }
        }
        let mut where_not_empty = None;
        if kw(get(i), "WHERE") {
            let col = get(i + 1).to_string();
            if !id::is_valid_name(&col) || get(i + 2) != "!=" || get(i + 3) != "''" {
                return Err("Only `WHERE col != ''` partial indexes are supported.".into());
            }
            where_not_empty = Some(col);
            i += 4;
        }
        if get(i) == ";" {
            i += 1;
        }
        if i < toks.len() {
            return Err("Unexpected text after the index definition.".into());
        }
        Ok(Index {
            name,
            unique,
            columns,
            desc,
            where_not_empty,
        })
    }
}

fn tokenize_index(s: &str) -> Vec<String> {
    let mut out = vec![];
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '`' || ch == '"' || ch == '[' {
            let close = if ch == '[' { ']' } else { ch };
            let mut j = i + 1;
            while j < c.len() && c[j] != close {
                j += 1;
            }
            out.push(c[i + 1..j.min(c.len())].iter().collect());
            i = j + 1;
        } else if ch == '\'' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '\'' {
                j += 1;
            }
            out.push(c[i..(j + 1).min(c.len())].iter().collect());
            i = j + 1;
        } else if ch == '!' && c.get(i + 1) == Some(&'=') {
            out.push("!=".into());
            i += 2;
        } else if "(),;".contains(ch) {
            out.push(ch.to_string());
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' {
            let mut j = i;
            while j < c.len() && (c[j].is_alphanumeric() || c[j] == '_') {
                j += 1;
            }
            out.push(c[i..j].iter().collect());
            i = j;
        } else {
            out.push(ch.to_string());
            i += 1;
        }
    }
    out.retain(|t| !t.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pocketbase_index_forms() {
        let ix = Index::parse(
            "CREATE UNIQUE INDEX `idx_email_x` ON `users` (`email`) WHERE `email` != ''",
        )
        .unwrap();
        assert!(ix.unique);
        assert_eq!(ix.columns, vec!["email"]);
        assert_eq!(ix.where_not_empty.as_deref(), Some("email"));
        let ix = Index::parse("CREATE INDEX idx_posts_score ON posts (score DESC, title)").unwrap();
        assert_eq!(ix.desc, vec![true, false]);
        assert!(Index::parse("CREATE INDEX x ON t (a); DROP TABLE t").is_err());
        assert!(Index::parse("CREATE INDEX x ON t (lower(a))").is_err());
    }

    #[test]
    fn text_patterns_are_bounded_in_length() {
        let mut c = Collection::scaffold(CollectionType::Base, "things");
        let mut f = Field::new("code", FieldType::Text);
        f.pattern = "b".repeat(MAX_PATTERN_LEN);
        f.autogenerate_pattern = "b".repeat(MAX_PATTERN_LEN);
        c.fields.push(f);
        assert!(c.validate(&[]).is_ok());
        c.fields[1].pattern.push('b');
        c.fields[1].autogenerate_pattern.push('b');
        let errs = c.validate(&[]).unwrap_err();
        for key in ["fields.1.pattern", "fields.1.autogeneratePattern"] {
            assert_eq!(errs[key].code, crate::codes::INVALID_PATTERN, "{key}");
            assert_eq!(errs[key].message, "Pattern too long.");
        }
    }
}
