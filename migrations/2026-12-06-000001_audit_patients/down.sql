DROP INDEX audit_events_patients;
ALTER TABLE audit_events ALTER COLUMN patients DROP NOT NULL;
ALTER TABLE audit_events ALTER COLUMN patients DROP DEFAULT;
ALTER TABLE audit_events RENAME COLUMN patients TO patient;
ALTER TABLE audit_events ALTER COLUMN patient TYPE text USING patient[1];
CREATE INDEX audit_events_patient ON audit_events (patient, recorded);
