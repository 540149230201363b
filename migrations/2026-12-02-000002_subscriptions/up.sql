-- FHIR Subscriptions: the transactional outbox of notification events and the delivery
-- state of each subscription (see src/subscriptions/).
--
-- A subscription's settings live in its Subscription resource; these tables hold what the
-- server keeps about it. They are split by who writes them, so that a write that records
-- an event never waits for a delivery in progress:
--   subscription_counters  written by the write path (the event counter, row-locked only
--                          for the length of the write's transaction);
--   subscription_delivery  claimed by the delivery workers with FOR UPDATE SKIP LOCKED and
--                          held locked while one notification is sent.

CREATE TABLE subscription_counters (
    subscription_id     text   PRIMARY KEY,
    -- The resource type the criteria select ('Observation' for 'Observation?code=...').
    resource_type       text   NOT NULL,
    -- Events recorded since the subscription started: the last event number used. Bumped
    -- in the transaction of the change it records, so numbers are gapless.
    events_since_start  bigint NOT NULL DEFAULT 0,
    -- false while the subscription is off: no events are recorded.
    recording           boolean NOT NULL DEFAULT true
);
CREATE INDEX subscription_counters_type ON subscription_counters (resource_type) WHERE recording;

CREATE TABLE subscription_delivery (
    subscription_id     text        PRIMARY KEY REFERENCES subscription_counters ON DELETE CASCADE,
    -- requested, active, error or off, as the Subscription resource shows it.
    status              text        NOT NULL,
    -- The last event number the endpoint acknowledged (2xx); events after it are pending.
    delivered_through   bigint      NOT NULL DEFAULT 0,
    handshake_pending   boolean     NOT NULL DEFAULT false,
    heartbeat_seconds   integer,
    -- Failed attempts at the notification now due; 0 after a success.
    attempts            integer     NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    last_sent_at        timestamptz,
    last_error          text
);
CREATE INDEX subscription_delivery_due ON subscription_delivery (next_attempt_at)
    WHERE status IN ('requested', 'active');

-- Every event ever recorded (kept after delivery, for $events).
CREATE TABLE subscription_events (
    subscription_id  text        NOT NULL REFERENCES subscription_counters ON DELETE CASCADE,
    event_number     bigint      NOT NULL,
    occurred_at      timestamptz NOT NULL,
    -- The resource version that triggered the event.
    focus_type       text        NOT NULL,
    focus_id         text        NOT NULL,
    focus_version    integer     NOT NULL,
    -- POST, PUT, PATCH or DELETE: the interaction that wrote the focus version.
    method           text        NOT NULL,
    delivered_at     timestamptz,
    PRIMARY KEY (subscription_id, event_number)
);
