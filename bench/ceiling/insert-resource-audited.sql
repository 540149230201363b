-- Raw-SQL ceiling of create_patient with its audit: insert-resource.sql plus the
-- AuditEvent row the server commits in the same transaction (copied from the event of a
-- create the server recorded, so its size and index entries are the server's). pgbench
-- variables: content, template_seq (as in insert-resource.sql) and audit_template_seq
-- (seq of that create's audit_events row).
\set n random(1, 2000000000)
BEGIN;
INSERT INTO resources (resource_type, id, version_id, last_updated, content)
VALUES ('Patient', 'pgb-' || :client_id || '-' || :n || '-' || txid_current(), 1, now(), :content)
RETURNING created_seq, id AS new_id \gset
INSERT INTO resource_versions (resource_type, id, version_id, last_updated, deleted, method, content)
VALUES ('Patient', :new_id, 1, now(), false, 'POST', :content);
WITH t AS (INSERT INTO search_token (resource_seq, resource_type, param, system, code, text)
           SELECT :created_seq, resource_type, param, system, code, text FROM search_token
           WHERE resource_type = 'Patient' AND resource_seq = :template_seq),
     s AS (INSERT INTO search_string (resource_seq, resource_type, param, normalized, exact)
           SELECT :created_seq, resource_type, param, normalized, exact FROM search_string
           WHERE resource_type = 'Patient' AND resource_seq = :template_seq),
     r AS (INSERT INTO search_reference (resource_seq, resource_type, param, target_type, target_id, url)
           SELECT :created_seq, resource_type, param, target_type, target_id, url FROM search_reference
           WHERE resource_type = 'Patient' AND resource_seq = :template_seq)
INSERT INTO search_date (resource_seq, resource_type, param, start, finish)
SELECT :created_seq, resource_type, param, start, finish FROM search_date
WHERE resource_type = 'Patient' AND resource_seq = :template_seq;
INSERT INTO audit_events (id, recorded, request_id, agent, patients, outcome, subtype, action, content)
SELECT 'pgb-' || :client_id || '-' || :n || '-' || txid_current(), now(), request_id, agent,
       ARRAY[CAST(:new_id AS text)], outcome, subtype, action, content
  FROM audit_events WHERE seq = :audit_template_seq;
END;
