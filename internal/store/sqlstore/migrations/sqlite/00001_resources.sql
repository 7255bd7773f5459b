-- +goose Up
-- Current version of every resource; pk is the internal key every index row refers to.
CREATE TABLE resources (
    pk           INTEGER PRIMARY KEY,
    type         TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL, -- unix microseconds, UTC
    deleted      INTEGER NOT NULL DEFAULT 0,
    body         BLOB             -- resource JSON; NULL when deleted
);
CREATE UNIQUE INDEX resources_type_id ON resources (type, id);
CREATE INDEX resources_type_updated ON resources (type, last_updated);

-- Every version, including the current one and deletes; seq orders history newest first.
CREATE TABLE resource_history (
    seq          INTEGER PRIMARY KEY,
    pk           INTEGER NOT NULL,
    type         TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    method       TEXT    NOT NULL, -- POST, PUT or DELETE
    deleted      INTEGER NOT NULL DEFAULT 0,
    body         BLOB
);
CREATE UNIQUE INDEX resource_history_pk_version ON resource_history (pk, version);
CREATE INDEX resource_history_type_seq ON resource_history (type, seq);
CREATE INDEX resource_history_updated ON resource_history (last_updated);

-- +goose Down
DROP TABLE resource_history;
DROP TABLE resources;
