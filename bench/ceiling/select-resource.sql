-- Raw-SQL ceiling of read_patient: one live Patient's content by primary key, over the
-- ids bench/crud-load created (bench-1 ... bench-:patients).
\set n random(1, :patients)
SELECT content, version_id, last_updated FROM resources
WHERE resource_type = 'Patient' AND id = 'bench-' || :n AND NOT deleted;
