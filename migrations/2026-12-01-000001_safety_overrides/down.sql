DROP TABLE safety_overrides;
