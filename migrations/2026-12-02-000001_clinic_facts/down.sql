DROP TABLE clinic_facts;
