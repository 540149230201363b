-- Raw-SQL ceiling of search_name_birthdate: the first 20 Patients (creation order) whose
-- name starts with "smi" and who were born in 1970 or later, written by hand.
SELECT r.content
FROM resources r
WHERE r.resource_type = 'Patient' AND NOT r.deleted
  AND r.created_seq IN (SELECT n.resource_seq FROM search_string n
                        WHERE n.resource_type = 'Patient' AND n.param = 'name'
                          AND n.normalized ~>=~ 'smi' AND n.normalized ~<~ 'smj')
  AND EXISTS (SELECT 1 FROM search_date b
              WHERE b.resource_type = 'Patient' AND b.resource_seq = r.created_seq AND b.param = 'birthdate'
                AND b.start >= '1970-01-01')
ORDER BY r.created_seq
LIMIT 21;
