-- Current version of every resource (one row per type and id, deleted ones kept as tombstones).
CREATE TABLE resources (
    resource_type  text        NOT NULL,
    id             text        NOT NULL,
    version_id     integer     NOT NULL CHECK (version_id > 0),
    last_updated   timestamptz NOT NULL,
    deleted        boolean     NOT NULL DEFAULT false,
    -- NULL exactly when deleted.
    content        jsonb,
    -- Creation order, the stable key of search pagination.
    created_seq    bigint      GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (resource_type, id),
    CHECK (deleted = (content IS NULL))
);
CREATE UNIQUE INDEX resources_type_seq ON resources (resource_type, created_seq);
CREATE INDEX resources_type_last_updated ON resources (resource_type, last_updated);

-- Every version ever written, the current one included; never updated, never deleted.
CREATE TABLE resource_versions (
    seq            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resource_type  text        NOT NULL,
    id             text        NOT NULL,
    version_id     integer     NOT NULL,
    last_updated   timestamptz NOT NULL,
    deleted        boolean     NOT NULL,
    -- The interaction that produced the version: POST, PUT, PATCH or DELETE.
    method         text        NOT NULL,
    content        jsonb,
    UNIQUE (resource_type, id, version_id),
    CHECK (deleted = (content IS NULL))
);
CREATE INDEX resource_versions_type_seq ON resource_versions (resource_type, seq);

-- Search index: one row per token value of a search parameter, for current, live versions.
CREATE TABLE search_tokens (
    resource_type  text NOT NULL,
    id             text NOT NULL,
    param          text NOT NULL,
    system         text,
    code           text NOT NULL,
    FOREIGN KEY (resource_type, id) REFERENCES resources (resource_type, id) ON DELETE CASCADE
);
CREATE INDEX search_tokens_lookup ON search_tokens (resource_type, param, code, system);
CREATE INDEX search_tokens_owner ON search_tokens (resource_type, id);

-- Search index: one row per reference value of a search parameter.
CREATE TABLE search_references (
    resource_type  text NOT NULL,
    id             text NOT NULL,
    param          text NOT NULL,
    target_type    text,
    target_id      text NOT NULL,
    FOREIGN KEY (resource_type, id) REFERENCES resources (resource_type, id) ON DELETE CASCADE
);
CREATE INDEX search_references_lookup ON search_references (resource_type, param, target_id, target_type);
CREATE INDEX search_references_owner ON search_references (resource_type, id);
