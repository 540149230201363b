-- SMART Backend Services clients (registered with `ketamine-fhir client register`) and the
-- client assertion ids already used, so that an assertion is never accepted twice.
CREATE TABLE smart_clients (
    client_id text PRIMARY KEY CHECK (length(client_id) BETWEEN 1 AND 255),
    -- The client's public keys, inline (a JWK Set) or at a URL fetched and cached.
    jwks jsonb,
    jwks_url text,
    -- Space-separated scopes the client may be granted.
    scope text NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((jwks IS NULL) <> (jwks_url IS NULL))
);

-- `expires_at` is the assertion's `exp` plus the clock leeway: past it the assertion would
-- be refused as expired anyway, so the row is no longer needed and is purged.
CREATE TABLE smart_assertion_jtis (
    client_id text NOT NULL REFERENCES smart_clients (client_id) ON DELETE CASCADE,
    jti text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);

CREATE INDEX smart_assertion_jtis_expires_at ON smart_assertion_jtis (expires_at);
