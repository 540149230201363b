//! Diesel table definitions, mirroring migrations/. The index tables have no primary key in
//! SQL; diesel needs one, so their declared keys here only name the columns that identify a row.

diesel::table! {
    resources (resource_type, id) {
        resource_type -> Text,
        id -> Text,
        version_id -> Integer,
        last_updated -> Timestamptz,
        deleted -> Bool,
        content -> Nullable<Jsonb>,
        created_seq -> BigInt,
    }
}

diesel::table! {
    resource_versions (seq) {
        seq -> BigInt,
        resource_type -> Text,
        id -> Text,
        version_id -> Integer,
        last_updated -> Timestamptz,
        deleted -> Bool,
        method -> Text,
        content -> Nullable<Jsonb>,
    }
}

diesel::table! {
    search_tokens (resource_type, id, param, code) {
        resource_type -> Text,
        id -> Text,
        param -> Text,
        system -> Nullable<Text>,
        code -> Text,
    }
}

diesel::table! {
    search_references (resource_type, id, param, target_id) {
        resource_type -> Text,
        id -> Text,
        param -> Text,
        target_type -> Nullable<Text>,
        target_id -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    resources,
    resource_versions,
    search_tokens,
    search_references
);
