-- Raw-SQL ceiling of search_patient_pain_sorted: the same answer (a random patient's pain
-- scores, newest first, 50 at most) written by hand against the same tables, as pgbench runs it.
\set n random(1, :patients)
SELECT r.content
FROM search_reference p
JOIN search_token c ON c.resource_type = 'Observation' AND c.resource_seq = p.resource_seq
     AND c.param = 'code' AND c.code = '72514-3' AND c.system = 'http://loinc.org'
JOIN resources r ON r.resource_type = 'Observation' AND r.created_seq = p.resource_seq AND NOT r.deleted
LEFT JOIN LATERAL (SELECT max(d.finish) AS k FROM search_date d
                   WHERE d.resource_type = 'Observation' AND d.resource_seq = p.resource_seq AND d.param = 'date') d ON true
WHERE p.resource_type = 'Observation' AND p.param = 'patient' AND p.target_id = 'syn-' || lpad(:n::text, 7, '0')
ORDER BY d.k DESC NULLS LAST, r.created_seq
LIMIT 51;
