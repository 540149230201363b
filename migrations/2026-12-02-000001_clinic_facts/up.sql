-- Outcome facts (see clinic::facts): per patient, each ketamine infusion given and each
-- recorded pain score, derived from the current, live version of a MedicationAdministration
-- or Observation. Like the search index, the rows are keyed by the resource's created_seq,
-- rewritten in the transaction that writes the version, and rebuilt by `ketamine-fhir
-- reindex` (the index fingerprint covers the fact rules, so the first start after this
-- migration fills the table). The clinic-level $outcomes reads only this table: one narrow
-- row per figure instead of a join of three index tables and the resources' JSON.
CREATE TABLE clinic_facts (
    resource_seq  bigint           NOT NULL,
    patient_id    text             NOT NULL,
    -- 'infusion' or 'pain-score'.
    kind          text             NOT NULL,
    at            timestamptz      NOT NULL,
    -- The score of a pain score; NULL for an infusion.
    value         double precision
);
-- A patient's figures of one kind in time order, readable from the index alone.
CREATE INDEX clinic_facts_patient ON clinic_facts (kind, patient_id, at, resource_seq) INCLUDE (value);
-- The figures of one kind in a time range.
CREATE INDEX clinic_facts_at ON clinic_facts (kind, at) INCLUDE (patient_id);
CREATE INDEX clinic_facts_resource ON clinic_facts (resource_seq);
