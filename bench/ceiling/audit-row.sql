-- The AuditEvent row the server commits with each create, copied from the event of a
-- create it recorded (so its size and index entries are the server's). bench/crud-load
-- splices this statement into insert-resource.sql before its END to make the
-- ceiling_insert_resource_audited script. pgbench variables: audit_template_seq (seq of
-- that create's audit_events row), and new_id and n from insert-resource.sql.
INSERT INTO audit_events (id, recorded, request_id, agent, patients, outcome, subtype, action, content)
SELECT 'pgb-' || :client_id || '-' || :n || '-' || txid_current(), now(), request_id, agent,
       ARRAY[CAST(:new_id AS text)], outcome, subtype, action, content
  FROM audit_events WHERE seq = :audit_template_seq;
