-- Bulk Data $export jobs (see src/export/): one row per job, one per output file, and the
-- NDJSON text of each file in chunks, one chunk per step of the job.
--
-- The workers of every instance claim jobs from export_jobs: a job is held by one worker
-- under a lease that the worker renews with each step, and that another instance takes
-- over when it lapses (the holder died). A step reads the next resources of a type, appends
-- them to the open file as one chunk and moves the job's position on, in one transaction,
-- so a job taken over resumes exactly where the last committed step left it.

CREATE TABLE export_jobs (
    id               uuid        PRIMARY KEY,
    -- The access token subject that started the job: only it may poll, download or cancel.
    owner            text        NOT NULL,
    -- The kick-off request URL, echoed in the manifest.
    request          text        NOT NULL,
    level            text        NOT NULL CHECK (level IN ('system', 'patient', 'group')),
    -- Group exports: the ids of the Group's member patients when the export was started.
    members          text[],
    -- The types to export, in order: [{"type", "patient", "filters"}]; `patient` confines a
    -- type to one patient's compartment (a patient-scoped token), `filters` are the type's
    -- _typeFilter queries (OR-ed).
    types            jsonb       NOT NULL,
    since            timestamptz,
    transaction_time timestamptz NOT NULL,
    status           text        NOT NULL DEFAULT 'queued'
                                 CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- The worker that holds the job, until when.
    lease_holder     uuid,
    lease_until      timestamptz,
    -- Steps that failed; the job fails for good after the third.
    failures         integer     NOT NULL DEFAULT 0,
    -- Where the export stands: the type being read (index into types), the last
    -- created_seq read of it, the last file opened and how full it is, chunks written.
    type_position    integer     NOT NULL DEFAULT 0,
    last_seq         bigint      NOT NULL DEFAULT 0,
    file_number      integer     NOT NULL DEFAULT 0,
    file_resources   bigint      NOT NULL DEFAULT 0,
    file_bytes       bigint      NOT NULL DEFAULT 0,
    chunks           integer     NOT NULL DEFAULT 0,
    -- Progress: resources written so far, and the planner's estimate of the total.
    exported         bigint      NOT NULL DEFAULT 0,
    estimated        bigint,
    -- Why a failed job failed, in words fit for the client.
    error            text,
    finished_at      timestamptz,
    CHECK ((status IN ('completed', 'failed')) = (finished_at IS NOT NULL))
);
CREATE INDEX export_jobs_due ON export_jobs (created_at) WHERE status IN ('queued', 'running');
CREATE INDEX export_jobs_finished ON export_jobs (finished_at) WHERE finished_at IS NOT NULL;

-- One row per output file: resources of one type, at most BULK_EXPORT_FILE_RESOURCES.
CREATE TABLE export_files (
    job_id          uuid    NOT NULL REFERENCES export_jobs ON DELETE CASCADE,
    file_number     integer NOT NULL,
    resource_type   text    NOT NULL,
    resource_count  bigint  NOT NULL,
    -- The file's exact length: the sum of its chunks' lengths.
    byte_count      bigint  NOT NULL,
    PRIMARY KEY (job_id, file_number)
);

-- A file's content: its chunks in chunk_number order, each a run of NDJSON lines (every
-- line ends with a newline), so a file is read and served one chunk at a time.
CREATE TABLE export_chunks (
    job_id        uuid    NOT NULL,
    file_number   integer NOT NULL,
    chunk_number  integer NOT NULL,
    lines         text    NOT NULL,
    PRIMARY KEY (job_id, file_number, chunk_number),
    FOREIGN KEY (job_id, file_number) REFERENCES export_files ON DELETE CASCADE
);
