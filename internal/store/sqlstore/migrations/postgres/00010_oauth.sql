-- +goose Up
-- PostgreSQL twin of migrations/sqlite/00010_oauth.sql (see 00001 for the type mapping).
-- OAuth clients: RFC 7591 metadata as JSON; the secret only as a SHA-256 digest.
CREATE TABLE oauth_clients (
    client_id   TEXT COLLATE "C" PRIMARY KEY,
    metadata    TEXT   NOT NULL, -- JSON client metadata without the secret
    secret_hash BYTEA,           -- SHA-256 of the client secret, NULL for other methods
    source      TEXT   NOT NULL, -- config | admin | dynamic
    created_at  BIGINT NOT NULL  -- unix seconds
);

-- Local user accounts; passwords only as argon2id PHC strings.
CREATE TABLE oauth_users (
    username      TEXT COLLATE "C" PRIMARY KEY,
    password_hash TEXT   NOT NULL,
    fhir_user     TEXT   NOT NULL DEFAULT '',
    roles         TEXT   NOT NULL DEFAULT '[]', -- JSON array
    source        TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);

-- fosite request records (authorization codes, access tokens, refresh tokens, PKCE and OIDC
-- sessions). signature is what the token strategy derives from the token (an HMAC for codes and
-- refresh tokens, the jti for access tokens): the tokens themselves are never stored.
CREATE TABLE oauth_requests (
    kind        TEXT COLLATE "C" NOT NULL, -- code | access | refresh | pkce | oidc
    signature   TEXT COLLATE "C" NOT NULL,
    request_id  TEXT COLLATE "C" NOT NULL,
    client_id   TEXT COLLATE "C" NOT NULL,
    subject     TEXT COLLATE "C" NOT NULL DEFAULT '',
    active      BIGINT NOT NULL DEFAULT 1,
    expires_at  BIGINT NOT NULL, -- unix seconds; rows are deleted some time after this
    data        TEXT   NOT NULL, -- JSON of the sanitized request and session
    PRIMARY KEY (kind, signature)
);
CREATE INDEX oauth_requests_request_id ON oauth_requests (kind, request_id);
CREATE INDEX oauth_requests_expires ON oauth_requests (expires_at);

-- Client assertion jtis seen, per client, until the assertion expires (replay protection).
CREATE TABLE oauth_assertion_jtis (
    jti        TEXT COLLATE "C" PRIMARY KEY, -- client_id + ' ' + jti
    expires_at BIGINT NOT NULL
);
CREATE INDEX oauth_assertion_jtis_expires ON oauth_assertion_jtis (expires_at);

-- Revoked access-token jtis, kept until the token would have expired anyway.
CREATE TABLE oauth_revoked_jtis (
    jti        TEXT COLLATE "C" PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oauth_revoked_jtis_expires ON oauth_revoked_jtis (expires_at);

-- EHR launch contexts: single use, short lived, bound to a client.
CREATE TABLE oauth_launches (
    id_hash      TEXT COLLATE "C" PRIMARY KEY, -- SHA-256 of the launch value
    client_id    TEXT COLLATE "C" NOT NULL,
    patient      TEXT   NOT NULL DEFAULT '',
    encounter    TEXT   NOT NULL DEFAULT '',
    fhir_context TEXT   NOT NULL DEFAULT '[]',
    created_by   TEXT   NOT NULL DEFAULT '',
    used         BIGINT NOT NULL DEFAULT 0,
    expires_at   BIGINT NOT NULL
);

-- Signing keys and secrets; private parts encrypted with AES-256-GCM under the key-encryption key.
CREATE TABLE oauth_keys (
    kid          TEXT COLLATE "C" PRIMARY KEY,
    purpose      TEXT COLLATE "C" NOT NULL, -- access (ES256) | id (RS256) | hmac (fosite global secret)
    alg          TEXT   NOT NULL,
    private_enc  BYTEA  NOT NULL,
    public_jwk   TEXT   NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    retired_at   BIGINT          -- NULL while current
);
CREATE INDEX oauth_keys_purpose ON oauth_keys (purpose, activates_at);

-- Browser login sessions (single sign-on across authorizations) and in-flight authorizations
-- (login, patient picker, consent). Only hashes of the cookie values are stored.
CREATE TABLE oauth_browser_sessions (
    id_hash    TEXT COLLATE "C" PRIMARY KEY,
    username   TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE oauth_interactions (
    id           TEXT COLLATE "C" PRIMARY KEY,
    browser_hash TEXT   NOT NULL, -- SHA-256 of the browser-binding cookie
    data         TEXT   NOT NULL, -- JSON state
    expires_at   BIGINT NOT NULL
);
CREATE INDEX oauth_interactions_expires ON oauth_interactions (expires_at);

-- +goose Down
DROP TABLE oauth_interactions;
DROP TABLE oauth_browser_sessions;
DROP TABLE oauth_keys;
DROP TABLE oauth_launches;
DROP TABLE oauth_revoked_jtis;
DROP TABLE oauth_assertion_jtis;
DROP TABLE oauth_requests;
DROP TABLE oauth_users;
DROP TABLE oauth_clients;
