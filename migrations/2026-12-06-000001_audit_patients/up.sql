-- An interaction may touch several patients (a transaction Bundle writing for two): the
-- audit trail keeps every one, so an auditor asking for either finds the event.
DROP INDEX audit_events_patient;
ALTER TABLE audit_events
    ALTER COLUMN patient TYPE text[]
        USING CASE WHEN patient IS NULL THEN ARRAY[]::text[] ELSE ARRAY[patient] END;
ALTER TABLE audit_events RENAME COLUMN patient TO patients;
ALTER TABLE audit_events ALTER COLUMN patients SET DEFAULT ARRAY[]::text[];
ALTER TABLE audit_events ALTER COLUMN patients SET NOT NULL;
CREATE INDEX audit_events_patients ON audit_events USING gin (patients);
