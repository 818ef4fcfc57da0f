-- postline's queue, schema version 1.
-- A message's bytes, stored once whatever the number of its recipients.
CREATE TABLE postline_messages (
    id   text PRIMARY KEY,
    body bytea NOT NULL
);
-- Its entry: the same JSON document the spool writes, the schedule copied out for the index,
-- and the lease of the node working on it.
CREATE TABLE postline_entries (
    id           text PRIMARY KEY,
    entry        jsonb NOT NULL,
    next_attempt bigint NOT NULL,
    pending      boolean NOT NULL,
    lease_owner  text,
    lease_until  timestamptz
);
CREATE INDEX postline_entries_due ON postline_entries (next_attempt) WHERE pending;
-- Messages that left the queue with failed recipients (the spool's failed/).
CREATE TABLE postline_failed (
    id    text PRIMARY KEY,
    entry jsonb NOT NULL,
    at    timestamptz NOT NULL DEFAULT now()
);
-- Entries that could never be sent as they were (the spool's corrupt/).
CREATE TABLE postline_corrupt (
    id    text PRIMARY KEY,
    entry text,
    body  bytea,
    at    timestamptz NOT NULL DEFAULT now()
);
-- Connection slots per destination, shared by every node: a slot is leased like a message.
CREATE TABLE postline_slots (
    destination text NOT NULL,
    slot        integer NOT NULL,
    owner       text,
    until       timestamptz,
    PRIMARY KEY (destination, slot)
);
-- Messages a node took over from another whose lease ran out (it died or stalled holding
-- them, perhaps after sending): their recipients were marked in doubt.
CREATE TABLE postline_takeovers (
    id             text NOT NULL,
    previous_owner text NOT NULL,
    at             timestamptz NOT NULL DEFAULT now()
);
-- The shared sending schedule per destination (a rate every node keeps): each reservation
-- of n messages starts at next_free (or now) and moves it on by n / rate seconds.
CREATE TABLE postline_rates (
    destination text PRIMARY KEY,
    next_free   timestamptz NOT NULL
);
