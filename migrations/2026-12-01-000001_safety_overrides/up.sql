-- Every time a clinician overrides a failed infusion safety rule, one row per rule, written
-- in the transaction that stores the MedicationAdministration version it applies to.
-- Rows are only ever inserted: this is the audit record of overrides.
CREATE TABLE safety_overrides (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resource_type  text        NOT NULL,
    resource_id    text        NOT NULL,
    version_id     integer     NOT NULL,
    patient_id     text        NOT NULL,
    rule           text        NOT NULL,
    finding        text        NOT NULL,
    reason         text        NOT NULL,
    practitioner   text        NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX safety_overrides_resource ON safety_overrides (resource_type, resource_id, version_id);
CREATE INDEX safety_overrides_patient ON safety_overrides (patient_id, recorded_at);
