//! The validation codes of field errors (`data.<field>.code`), defined once: every `FieldError` the
//! server returns uses one of these. They are the protocol's (PocketBase's) codes where it has one,
//! and Basalt's own (`validation_totp_*`, …) otherwise; clients may match on them, so a code never
//! changes meaning.

pub const BACKUP_NAME_EXISTS: &str = "validation_backup_name_exists";
pub const COLLECTION_NAME_EXISTS: &str = "validation_collection_name_exists";
pub const COLLECTION_SYSTEM_NAME_CHANGE: &str = "validation_collection_system_name_change";
pub const COLLECTION_TYPE_CHANGE: &str = "validation_collection_type_change";
pub const COLLECTIONS_IMPORT_FAILURE: &str = "validation_collections_import_failure";
pub const DUPLICATED_FIELD_NAME: &str = "validation_duplicated_field_name";
pub const EMAIL_DOMAIN_NOT_ALLOWED: &str = "validation_email_domain_not_allowed";
pub const EMAIL_EXISTS: &str = "validation_email_exists";
pub const FIELD_RELATION_MISSING_COLLECTION: &str = "validation_field_relation_missing_collection";
pub const FIELD_TYPE_CHANGE: &str = "validation_field_type_change";
pub const FILE_SIZE_LIMIT: &str = "validation_file_size_limit";
pub const IN_INVALID: &str = "validation_in_invalid";
pub const INVALID_BODY: &str = "validation_invalid_body";
pub const INVALID_CRON: &str = "validation_invalid_cron";
pub const INVALID_FIELD: &str = "validation_invalid_field";
pub const INVALID_FIELDS: &str = "validation_invalid_fields";
pub const INVALID_FILE: &str = "validation_invalid_file";
pub const INVALID_FILE_NAME: &str = "validation_invalid_file_name";
pub const INVALID_FORMAT: &str = "validation_invalid_format";
pub const INVALID_AUTOGENERATE_PATTERN_VALUE: &str =
    "validation_invalid_autogenerate_pattern_value";
pub const INVALID_ID: &str = "validation_invalid_id";
pub const INVALID_INDEX_EXPRESSION: &str = "validation_invalid_index_expression";
pub const INVALID_INDEXES: &str = "validation_invalid_indexes";
pub const INVALID_IP: &str = "validation_invalid_ip";
pub const INVALID_LATITUDE: &str = "validation_invalid_latitude";
pub const INVALID_LONGITUDE: &str = "validation_invalid_longitude";
pub const INVALID_MIME_TYPE: &str = "validation_invalid_mime_type";
pub const INVALID_NAME: &str = "validation_invalid_name";
pub const INVALID_OLD_PASSWORD: &str = "validation_invalid_old_password";
pub const INVALID_PASSWORD: &str = "validation_invalid_password";
pub const INVALID_PATTERN: &str = "validation_invalid_pattern";
pub const INVALID_PII: &str = "validation_invalid_pii";
pub const INVALID_REGEX: &str = "validation_invalid_regex";
pub const INVALID_PRIVATE_KEY: &str = "validation_invalid_private_key";
pub const INVALID_PROVIDER: &str = "validation_invalid_provider";
pub const INVALID_RULE: &str = "validation_invalid_rule";
pub const INVALID_TOKEN: &str = "validation_invalid_token";
pub const INVALID_TOTP_CODE: &str = "validation_invalid_totp_code";
pub const INVALID_TYPE: &str = "validation_invalid_type";
pub const INVALID_URL: &str = "validation_invalid_url";
pub const INVALID_VALUE: &str = "validation_invalid_value";
pub const INVALID_VIEW_QUERY: &str = "validation_invalid_view_query";
pub const IS_EMAIL: &str = "validation_is_email";
pub const IS_URL: &str = "validation_is_url";
pub const JSON_SIZE_LIMIT: &str = "validation_json_size_limit";
pub const LENGTH_OUT_OF_RANGE: &str = "validation_length_out_of_range";
pub const LENGTH_TOO_LONG: &str = "validation_length_too_long";
pub const MATCH_INVALID: &str = "validation_match_invalid";
pub const MAX_DATE_CONSTRAINT: &str = "validation_max_date_constraint";
pub const MAX_LESS_EQUAL_THAN_REQUIRED: &str = "validation_max_less_equal_than_required";
pub const MAX_NUMBER_CONSTRAINT: &str = "validation_max_number_constraint";
pub const MAX_SIZE_CONSTRAINT: &str = "validation_max_size_constraint";
pub const MAX_TEXT_CONSTRAINT: &str = "validation_max_text_constraint";
pub const MIN_DATE_CONSTRAINT: &str = "validation_min_date_constraint";
pub const MIN_GREATER_EQUAL_THAN_REQUIRED: &str = "validation_min_greater_equal_than_required";
pub const MIN_NUMBER_CONSTRAINT: &str = "validation_min_number_constraint";
pub const MIN_TEXT_CONSTRAINT: &str = "validation_min_text_constraint";
pub const MISSING_COLLECTION: &str = "validation_missing_collection";
pub const MISSING_ID: &str = "validation_missing_id";
pub const MISSING_REL_RECORDS: &str = "validation_missing_rel_records";
pub const MISSING_SYSTEM_FIELD: &str = "validation_missing_system_field";
pub const NOT_ENOUGH_VALUES: &str = "validation_not_enough_values";
pub const NOT_IN_INVALID: &str = "validation_not_in_invalid";
pub const NOT_UNIQUE: &str = "validation_not_unique";
pub const ONLY_INT_CONSTRAINT: &str = "validation_only_int_constraint";
pub const OUT_OF_RANGE: &str = "validation_out_of_range";
pub const PII_FILTER: &str = "validation_pii_filter";
pub const REQUIRED: &str = "validation_required";
pub const RESERVED_PK: &str = "validation_reserved_pk";
pub const SYSTEM_FIELD_CHANGE: &str = "validation_system_field_change";
pub const TOKEN_COLLECTION_MISMATCH: &str = "validation_token_collection_mismatch";
pub const TOO_EXPENSIVE: &str = "validation_too_expensive";
pub const TOO_MANY_FILES: &str = "validation_too_many_files";
pub const TOO_MANY_VALUES: &str = "validation_too_many_values";
pub const UNSUPPORTED_TYPE: &str = "validation_unsupported_type";
pub const VALUES_MISMATCH: &str = "validation_values_mismatch";

/// Every code, for the uniqueness check and for documentation.
pub const ALL: &[&str] = &[
    BACKUP_NAME_EXISTS,
    COLLECTION_NAME_EXISTS,
    COLLECTION_SYSTEM_NAME_CHANGE,
    COLLECTION_TYPE_CHANGE,
    COLLECTIONS_IMPORT_FAILURE,
    DUPLICATED_FIELD_NAME,
    EMAIL_DOMAIN_NOT_ALLOWED,
    EMAIL_EXISTS,
    FIELD_RELATION_MISSING_COLLECTION,
    FIELD_TYPE_CHANGE,
    FILE_SIZE_LIMIT,
    IN_INVALID,
    INVALID_BODY,
    INVALID_CRON,
    INVALID_FIELD,
    INVALID_FIELDS,
    INVALID_FILE,
    INVALID_FILE_NAME,
    INVALID_FORMAT,
    INVALID_AUTOGENERATE_PATTERN_VALUE,
    INVALID_ID,
    INVALID_INDEX_EXPRESSION,
    INVALID_INDEXES,
    INVALID_IP,
    INVALID_LATITUDE,
    INVALID_LONGITUDE,
    INVALID_MIME_TYPE,
    INVALID_NAME,
    INVALID_OLD_PASSWORD,
    INVALID_PASSWORD,
    INVALID_PATTERN,
    INVALID_PII,
    INVALID_REGEX,
    INVALID_PRIVATE_KEY,
    INVALID_PROVIDER,
    INVALID_RULE,
    INVALID_TOKEN,
    INVALID_TOTP_CODE,
    INVALID_TYPE,
    INVALID_URL,
    INVALID_VALUE,
    INVALID_VIEW_QUERY,
    IS_EMAIL,
    IS_URL,
    JSON_SIZE_LIMIT,
    LENGTH_OUT_OF_RANGE,
    LENGTH_TOO_LONG,
    MATCH_INVALID,
    MAX_DATE_CONSTRAINT,
    MAX_LESS_EQUAL_THAN_REQUIRED,
    MAX_NUMBER_CONSTRAINT,
    MAX_SIZE_CONSTRAINT,
    MAX_TEXT_CONSTRAINT,
    MIN_DATE_CONSTRAINT,
    MIN_GREATER_EQUAL_THAN_REQUIRED,
    MIN_NUMBER_CONSTRAINT,
    MIN_TEXT_CONSTRAINT,
    MISSING_COLLECTION,
    MISSING_ID,
    MISSING_REL_RECORDS,
    MISSING_SYSTEM_FIELD,
    NOT_ENOUGH_VALUES,
    NOT_IN_INVALID,
    NOT_UNIQUE,
    ONLY_INT_CONSTRAINT,
    OUT_OF_RANGE,
    PII_FILTER,
    REQUIRED,
    RESERVED_PK,
    SYSTEM_FIELD_CHANGE,
    TOKEN_COLLECTION_MISMATCH,
    TOO_EXPENSIVE,
    TOO_MANY_FILES,
    TOO_MANY_VALUES,
    UNSUPPORTED_TYPE,
    VALUES_MISMATCH,
];

#[cfg(test)]
mod tests {
    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for c in super::ALL {
            assert!(seen.insert(*c), "{c} twice");
            assert!(c.starts_with("validation_"), "{c}");
            assert!(
                c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{c}"
            );
        }
    }
}
