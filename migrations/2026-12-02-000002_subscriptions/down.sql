DROP TABLE subscription_events;
DROP TABLE subscription_delivery;
DROP TABLE subscription_counters;
