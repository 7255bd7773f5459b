-- +goose Up
-- PostgreSQL twin of migrations/sqlite/00020_audit.sql (see 00001 for the type mapping; SQLite's
-- WITHOUT ROWID tables are plain tables here, clustered by nothing but their primary key index).
-- The audit trail: an append-only hash chain. Each row carries the SHA-256 of the previous row
-- (prev_hash) and its own hash over a canonical encoding of every column below except hash
-- (internal/audit/chain.go). The columns other than event are indexes derived from the event and
-- are covered by the hash too, so a query filter cannot be fooled by editing them.
CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,                -- 1, 2, 3, ... without gaps (assigned by the writer)
    id          TEXT COLLATE "C" NOT NULL UNIQUE,  -- AuditEvent.id
    recorded_us BIGINT NOT NULL,                   -- unix microseconds (AuditEvent.recorded)
    action      TEXT COLLATE "C" NOT NULL,         -- fhirgate action code (read, search-type, login, ...)
    outcome     TEXT COLLATE "C" NOT NULL,         -- success | denied | failure | error
    client_id   TEXT COLLATE "C" NOT NULL DEFAULT '',
    subject     TEXT COLLATE "C" NOT NULL DEFAULT '',
    fhir_user   TEXT COLLATE "C" NOT NULL DEFAULT '',
    source_ip   TEXT COLLATE "C" NOT NULL DEFAULT '',
    request_id  TEXT COLLATE "C" NOT NULL DEFAULT '',
    patients    TEXT   NOT NULL DEFAULT '[]',      -- JSON array of Patient ids
    prev_hash   BYTEA  NOT NULL,
    hash        BYTEA  NOT NULL,
    event       TEXT   NOT NULL                    -- AuditEvent JSON exactly as hashed
);
CREATE INDEX audit_log_recorded ON audit_log (recorded_us, seq);
-- Most entries are successes; only the others are worth an index.
CREATE INDEX audit_log_outcome ON audit_log (outcome, seq) WHERE outcome <> 'success';

-- Patient index of the trail (one row per patient concerned per entry); derived from
-- audit_log.patients, which the chain covers; `audit verify` cross-checks the two.
CREATE TABLE audit_patients (
    patient TEXT COLLATE "C" NOT NULL,
    seq     BIGINT NOT NULL,
    PRIMARY KEY (patient, seq)
);
CREATE INDEX audit_patients_seq ON audit_patients (seq);

-- Agent index of the trail: one row per distinct non-empty client_id, subject and fhir_user of
-- each entry, so that "everything agent X did" walks (agent, seq) in order. Derived from the
-- hashed columns; `audit verify` cross-checks it.
CREATE TABLE audit_agents (
    agent TEXT COLLATE "C" NOT NULL,
    seq   BIGINT NOT NULL,
    PRIMARY KEY (agent, seq)
);
CREATE INDEX audit_agents_seq ON audit_agents (seq);

-- Signed checkpoints: a JWS over (seq, head hash, time), made periodically by the server.
CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY,
    head_hash  BYTEA  NOT NULL,
    created_us BIGINT NOT NULL,
    jws        TEXT   NOT NULL
);

-- +goose Down
DROP TABLE audit_checkpoints;
DROP TABLE audit_agents;
DROP TABLE audit_patients;
DROP TABLE audit_log;
