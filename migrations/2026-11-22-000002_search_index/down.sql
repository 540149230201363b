DROP TABLE search_uri;
DROP TABLE search_reference;
DROP TABLE search_quantity;
DROP TABLE search_date;
DROP TABLE search_string;
DROP TABLE search_token;
DROP TABLE search_index_state;
DROP INDEX resources_created_seq;
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
