-- Raw-SQL ceiling of create_patient: what the server's write path stores for a new Patient,
-- in one transaction: the current row (content sent as a parameter, as the server sends
-- it), its first version, and its search index rows (copied from a Patient the server
-- indexed, so the row count per resource is the server's). pgbench variables: content
-- (the Patient JSON) and template_seq (created_seq of the indexed Patient).
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
END;
