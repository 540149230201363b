DROP TABLE search_references;
DROP TABLE search_tokens;
DROP TABLE resource_versions;
DROP TABLE resources;
