-- The search index, and partitioning by resource type.
--
-- `resources` and the six index tables are partitioned by LIST (resource_type), one
-- partition per type. The planner then keeps statistics per type, so a search of one type
-- is estimated from that type's rows only (a Patient name prefix is not diluted by a
-- million Observations), and every query names its type, which prunes the others.
-- Partitions are made by ensure_resource_type_partitions(type), which the application
-- calls for every type it serves after migrating.
--
-- Index rows describe the current, live version only, are keyed by the resource's
-- created_seq, and are rewritten in the transaction that writes the version. Rebuild them
-- with `ketamine-fhir reindex`.
DROP TABLE search_tokens;
DROP TABLE search_references;

ALTER TABLE resources RENAME TO resources_unpartitioned;
ALTER INDEX resources_type_seq RENAME TO resources_unpartitioned_type_seq;
ALTER INDEX resources_type_last_updated RENAME TO resources_unpartitioned_type_last_updated;
ALTER TABLE resources_unpartitioned RENAME CONSTRAINT resources_pkey TO resources_unpartitioned_pkey;

CREATE SEQUENCE resources_created_seq AS bigint;
CREATE TABLE resources (
    resource_type  text        NOT NULL,
    id             text        NOT NULL,
    version_id     integer     NOT NULL CHECK (version_id > 0),
    last_updated   timestamptz NOT NULL,
    deleted        boolean     NOT NULL DEFAULT false,
    -- NULL exactly when deleted.
    content        jsonb,
    -- Creation order, the stable key of search pagination and of the index rows.
    created_seq    bigint      NOT NULL DEFAULT nextval('resources_created_seq'),
    PRIMARY KEY (resource_type, id),
    UNIQUE (resource_type, created_seq),
    CHECK (deleted = (content IS NULL))
) PARTITION BY LIST (resource_type);
ALTER SEQUENCE resources_created_seq OWNED BY resources.created_seq;
CREATE INDEX resources_type_last_updated ON resources (resource_type, last_updated);

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
) PARTITION BY LIST (resource_type);
CREATE INDEX search_token_code ON search_token (param, code, system, resource_seq);
CREATE INDEX search_token_resource ON search_token (resource_seq, param, code, system);

-- string: normalised (lower case, accents removed) for the default and :contains
-- searches, exact for :exact.
CREATE TABLE search_string (
    resource_seq   bigint NOT NULL,
    resource_type  text   NOT NULL,
    param          text   NOT NULL,
    normalized     text   NOT NULL,
    exact          text   NOT NULL
) PARTITION BY LIST (resource_type);
CREATE INDEX search_string_prefix ON search_string (param, normalized text_pattern_ops, resource_seq);
CREATE INDEX search_string_resource ON search_string (resource_seq, param, normalized);

-- date: every stored date is the instant range [start, finish) its precision and zone give.
CREATE TABLE search_date (
    resource_seq   bigint      NOT NULL,
    resource_type  text        NOT NULL,
    param          text        NOT NULL,
    start          timestamptz NOT NULL,
    finish         timestamptz NOT NULL
) PARTITION BY LIST (resource_type);
CREATE INDEX search_date_start ON search_date (param, start, resource_seq);
CREATE INDEX search_date_finish ON search_date (param, finish, resource_seq);
CREATE INDEX search_date_resource ON search_date (resource_seq, param, start, finish);

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
) PARTITION BY LIST (resource_type);
CREATE INDEX search_quantity_value ON search_quantity (param, value, resource_seq);
CREATE INDEX search_quantity_canonical ON search_quantity (param, canonical_code, canonical_value, resource_seq);
CREATE INDEX search_quantity_resource ON search_quantity (resource_seq, param);

-- reference: local targets as type + id; references to other servers by URL.
CREATE TABLE search_reference (
    resource_seq   bigint NOT NULL,
    resource_type  text   NOT NULL,
    param          text   NOT NULL,
    target_type    text,
    target_id      text,
    url            text
) PARTITION BY LIST (resource_type);
CREATE INDEX search_reference_target ON search_reference (param, target_id, target_type, resource_seq);
CREATE INDEX search_reference_resource ON search_reference (resource_seq, param, target_id, target_type);

-- uri (and canonical).
CREATE TABLE search_uri (
    resource_seq   bigint NOT NULL,
    resource_type  text   NOT NULL,
    param          text   NOT NULL,
    uri            text   NOT NULL
) PARTITION BY LIST (resource_type);
CREATE INDEX search_uri_value ON search_uri (param, uri, resource_seq);
CREATE INDEX search_uri_resource ON search_uri (resource_seq, param);

-- Creates the partitions of one resource type in `resources` and every index table, if
-- they are missing. Serialised by an advisory lock, so instances starting together do not
-- race on the catalog.
CREATE FUNCTION ensure_resource_type_partitions(resource_type text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    parent text;
BEGIN
    IF resource_type !~ '^[A-Z][A-Za-z]{1,50}$' THEN
        RAISE EXCEPTION 'not a resource type name: %', resource_type;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('ketamine-fhir partitions', 0));
    FOREACH parent IN ARRAY ARRAY['resources', 'search_token', 'search_string', 'search_date',
                                  'search_quantity', 'search_reference', 'search_uri'] LOOP
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES IN (%L)',
                       parent || '_' || lower(resource_type), parent, resource_type);
    END LOOP;
END
$$;

-- Move the existing resources into their partitions; creation order is kept.
DO $$
DECLARE
    stored text;
BEGIN
    FOR stored IN SELECT DISTINCT resource_type FROM resources_unpartitioned LOOP
        PERFORM ensure_resource_type_partitions(stored);
    END LOOP;
END
$$;
INSERT INTO resources (resource_type, id, version_id, last_updated, deleted, content, created_seq)
    SELECT resource_type, id, version_id, last_updated, deleted, content, created_seq
    FROM resources_unpartitioned ORDER BY created_seq;
SELECT setval('resources_created_seq', coalesce((SELECT max(created_seq) FROM resources_unpartitioned), 0) + 1, false);
DROP TABLE resources_unpartitioned;
