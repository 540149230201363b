-- The search index, one table per search-parameter type, keyed by the resource's
-- created_seq. Rows describe the current, live version only and are rewritten in the
-- transaction that writes the version. Rebuild with `ketamine-fhir reindex`.
DROP TABLE search_tokens;
DROP TABLE search_references;

CREATE UNIQUE INDEX resources_created_seq ON resources (created_seq);

-- Which extraction rules built the index; a different fingerprint means reindex.
CREATE TABLE search_index_state (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    fingerprint  text NOT NULL
);

-- token: Coding, CodeableConcept, Identifier, ContactPoint, code, boolean, id.
-- `text` is the normalised display/text for :text; code may be NULL for text-only concepts.
CREATE TABLE search_token (
    resource_seq   bigint NOT NULL,
    resource_type  text   NOT NULL,
    param          text   NOT NULL,
    system         text,
    code           text,
    text           text
);
CREATE INDEX search_token_code ON search_token (resource_type, param, code, system, resource_seq);
CREATE INDEX search_token_resource ON search_token (resource_seq);

-- string: normalised (lower case, accents removed) for the default and :contains
-- searches, exact for :exact.
CREATE TABLE search_string (
    resource_seq   bigint NOT NULL,
    resource_type  text   NOT NULL,
    param          text   NOT NULL,
    normalized     text   NOT NULL,
    exact          text   NOT NULL
);
CREATE INDEX search_string_prefix ON search_string (resource_type, param, normalized text_pattern_ops, resource_seq);
CREATE INDEX search_string_resource ON search_string (resource_seq);

-- date: every stored date is the instant range [start, finish) its precision and zone give.
CREATE TABLE search_date (
    resource_seq   bigint      NOT NULL,
    resource_type  text        NOT NULL,
    param          text        NOT NULL,
    start          timestamptz NOT NULL,
    finish         timestamptz NOT NULL
);
CREATE INDEX search_date_start ON search_date (resource_type, param, start, resource_seq);
CREATE INDEX search_date_finish ON search_date (resource_type, param, finish, resource_seq);
CREATE INDEX search_date_resource ON search_date (resource_seq);

-- quantity and number: the value as sent, and, for units of a known dimension, the
-- value in the dimension's canonical unit (g, L, s, ...), so mg and g compare.
CREATE TABLE search_quantity (
    resource_seq     bigint           NOT NULL,
    resource_type    text             NOT NULL,
    param            text             NOT NULL,
    value            double precision NOT NULL,
    system           text,
    code             text,
    canonical_value  double precision,
    canonical_code   text
);
CREATE INDEX search_quantity_value ON search_quantity (resource_type, param, value, resource_seq);
CREATE INDEX search_quantity_canonical ON search_quantity (resource_type, param, canonical_code, canonical_value, resource_seq);
CREATE INDEX search_quantity_resource ON search_quantity (resource_seq);

-- reference: local targets as type + id; references to other servers by URL.
CREATE TABLE search_reference (
    resource_seq   bigint NOT NULL,
    resource_type  text   NOT NULL,
    param          text   NOT NULL,
    target_type    text,
    target_id      text,
    url            text
);
CREATE INDEX search_reference_target ON search_reference (resource_type, param, target_id, target_type, resource_seq);
CREATE INDEX search_reference_reverse ON search_reference (target_type, target_id, resource_type, param);
CREATE INDEX search_reference_resource ON search_reference (resource_seq);

-- uri (and canonical).
CREATE TABLE search_uri (
    resource_seq   bigint NOT NULL,
    resource_type  text   NOT NULL,
    param          text   NOT NULL,
    uri            text   NOT NULL
);
CREATE INDEX search_uri_value ON search_uri (resource_type, param, uri, resource_seq);
CREATE INDEX search_uri_resource ON search_uri (resource_seq);
