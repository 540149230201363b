DROP TABLE export_chunks;
DROP TABLE export_files;
DROP TABLE export_jobs;
