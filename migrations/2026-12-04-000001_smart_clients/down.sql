DROP TABLE smart_assertion_jtis;
DROP TABLE smart_clients;
