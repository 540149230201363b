-- Raw-SQL ceiling of read_patient with its durable audit: select-resource.sql's read,
-- then the AuditEvent row the server commits for it (audit-row.sql, spliced in by
-- bench/crud-load before the END, with a read event of the server as its template), in
-- one transaction with fsync on. The read's id is kept for the audit row's patients.
\set n random(1, :patients)
BEGIN;
SELECT content, version_id, last_updated, id AS new_id FROM resources
WHERE resource_type = 'Patient' AND id = 'bench-' || :n AND NOT deleted \gset
END;
