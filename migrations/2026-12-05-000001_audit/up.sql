-- The audit trail: one AuditEvent per interaction or refusal, written by the server only,
-- never changed and never removed (the triggers below refuse it, whoever asks).
CREATE TABLE audit_events (
    seq         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          text        NOT NULL UNIQUE,
    recorded    timestamptz NOT NULL,
    request_id  text,
    -- The token subject; NULL when the request carried no valid token.
    agent       text,
    -- The patient whose data the interaction touched (`Patient/<id>` without the type).
    patient     text,
    -- AuditEvent.outcome: 0 success, 4 minor failure, 8 serious failure.
    outcome     text        NOT NULL,
    -- AuditEvent.subtype: the FHIR restful interaction, or `login` at the token endpoint.
    subtype     text        NOT NULL,
    action      text        NOT NULL,
    content     jsonb       NOT NULL
);
CREATE INDEX audit_events_recorded ON audit_events (recorded);
CREATE INDEX audit_events_agent ON audit_events (agent, recorded);
CREATE INDEX audit_events_patient ON audit_events (patient, recorded);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP;
END
$$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
