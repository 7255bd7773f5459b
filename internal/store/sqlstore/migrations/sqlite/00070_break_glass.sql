-- +goose Up
-- The break-glass review queue: every emergency access grant, until a privacy officer closes it
-- with a decision.
CREATE TABLE break_glass_reviews (
    id         TEXT    PRIMARY KEY,
    created_at BIGINT  NOT NULL, -- unix seconds
    username   TEXT    NOT NULL,
    fhir_user  TEXT    NOT NULL DEFAULT '',
    client_id  TEXT    NOT NULL,
    patient    TEXT    NOT NULL DEFAULT '',
    reason     TEXT    NOT NULL,
    status     TEXT    NOT NULL, -- open | closed
    decision   TEXT    NOT NULL DEFAULT '', -- justified | unjustified
    reviewer   TEXT    NOT NULL DEFAULT '',
    note       TEXT    NOT NULL DEFAULT '',
    closed_at  BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX break_glass_reviews_status ON break_glass_reviews (status, created_at);

-- +goose Down
DROP TABLE break_glass_reviews;
