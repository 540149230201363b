DROP TABLE search_uri;
DROP TABLE search_reference;
DROP TABLE search_quantity;
DROP TABLE search_date;
DROP TABLE search_string;
DROP TABLE search_token;
DROP TABLE search_index_state;

ALTER TABLE resources RENAME TO resources_partitioned;
CREATE TABLE resources (
    resource_type  text        NOT NULL,
    id             text        NOT NULL,
    version_id     integer     NOT NULL CHECK (version_id > 0),
    last_updated   timestamptz NOT NULL,
    deleted        boolean     NOT NULL DEFAULT false,
    content        jsonb,
    created_seq    bigint      GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (resource_type, id),
    CHECK (deleted = (content IS NULL))
);
INSERT INTO resources (resource_type, id, version_id, last_updated, deleted, content)
    SELECT resource_type, id, version_id, last_updated, deleted, content
    FROM resources_partitioned ORDER BY created_seq;
DROP TABLE resources_partitioned;
DROP FUNCTION ensure_resource_type_partitions(text);
CREATE UNIQUE INDEX resources_type_seq ON resources (resource_type, created_seq);
CREATE INDEX resources_type_last_updated ON resources (resource_type, last_updated);

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
