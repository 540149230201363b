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
    search_index_state (singleton) {
        singleton -> Bool,
        fingerprint -> Text,
    }
}

diesel::table! {
    search_token (resource_seq, param) {
        resource_seq -> BigInt,
        resource_type -> Text,
        param -> Text,
        system -> Nullable<Text>,
        code -> Nullable<Text>,
        text -> Nullable<Text>,
    }
}

diesel::table! {
    search_string (resource_seq, param) {
        resource_seq -> BigInt,
        resource_type -> Text,
        param -> Text,
        normalized -> Text,
        exact -> Text,
    }
}

diesel::table! {
    search_date (resource_seq, param) {
        resource_seq -> BigInt,
        resource_type -> Text,
        param -> Text,
        start -> Timestamptz,
        finish -> Timestamptz,
    }
}

diesel::table! {
    search_quantity (resource_seq, param) {
        resource_seq -> BigInt,
        resource_type -> Text,
        param -> Text,
        value -> Double,
        system -> Nullable<Text>,
        code -> Nullable<Text>,
        canonical_value -> Nullable<Double>,
        canonical_code -> Nullable<Text>,
    }
}

diesel::table! {
    search_reference (resource_seq, param) {
        resource_seq -> BigInt,
        resource_type -> Text,
        param -> Text,
        target_type -> Nullable<Text>,
        target_id -> Nullable<Text>,
        url -> Nullable<Text>,
    }
}

diesel::table! {
    search_uri (resource_seq, param) {
        resource_seq -> BigInt,
        resource_type -> Text,
        param -> Text,
        uri -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    resources,
    resource_versions,
    search_token,
    search_string,
    search_date,
    search_quantity,
    search_reference,
    search_uri,
);
