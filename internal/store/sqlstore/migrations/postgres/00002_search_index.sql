-- +goose Up
-- PostgreSQL twin of migrations/sqlite/00002_search_index.sql (see 00001 for the type mapping).
-- Search index: one row per extracted value, written in the transaction that writes the resource,
-- and removed when the resource is deleted. res_pk is resources.pk; res_type repeats its type so
-- that each lookup index starts with the type searched. Every text column is COLLATE "C": prefix
-- searches are ranges [p, p || U+10FFFF), which hold exactly the strings starting with p only
-- under a bytewise (code point) order, and "C" lets those ranges use the btree indexes.

-- string: value is normalised (lower case, accents removed) for the default and :contains
-- searches; exact is the value as written for :exact.
CREATE TABLE idx_string (
    res_pk   BIGINT NOT NULL,
    res_type TEXT COLLATE "C" NOT NULL,
    param    TEXT COLLATE "C" NOT NULL,
    value    TEXT COLLATE "C" NOT NULL,
    exact    TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_string_lookup ON idx_string (res_type, param, value, res_pk);
CREATE INDEX idx_string_res ON idx_string (res_pk);

-- token: system and code ('' when absent); text is the normalised display / CodeableConcept.text
-- for :text.
CREATE TABLE idx_token (
    res_pk   BIGINT NOT NULL,
    res_type TEXT COLLATE "C" NOT NULL,
    param    TEXT COLLATE "C" NOT NULL,
    system   TEXT COLLATE "C" NOT NULL DEFAULT '',
    code     TEXT COLLATE "C" NOT NULL DEFAULT '',
    text     TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX idx_token_lookup ON idx_token (res_type, param, code, system, res_pk);
CREATE INDEX idx_token_res ON idx_token (res_pk);

-- reference: target_type/target_id for references to resources on this server (relative, or
-- absolute on our base); url for any other absolute or canonical reference; ident_* for
-- Reference.identifier (:identifier).
CREATE TABLE idx_reference (
    res_pk       BIGINT NOT NULL,
    res_type     TEXT COLLATE "C" NOT NULL,
    param        TEXT COLLATE "C" NOT NULL,
    target_type  TEXT COLLATE "C" NOT NULL DEFAULT '',
    target_id    TEXT COLLATE "C" NOT NULL DEFAULT '',
    url          TEXT COLLATE "C" NOT NULL DEFAULT '',
    ident_system TEXT COLLATE "C" NOT NULL DEFAULT '',
    ident_value  TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX idx_reference_lookup ON idx_reference (res_type, param, target_id, target_type, res_pk);
CREATE INDEX idx_reference_target ON idx_reference (target_type, target_id, res_type, param);
CREATE INDEX idx_reference_res ON idx_reference (res_pk);

-- date: the instant range the value covers, inclusive, unix microseconds UTC
-- (1980-03 is [1980-03-01T00:00:00, 1980-03-31T23:59:59.999999]).
CREATE TABLE idx_date (
    res_pk   BIGINT NOT NULL,
    res_type TEXT COLLATE "C" NOT NULL,
    param    TEXT COLLATE "C" NOT NULL,
    low      BIGINT NOT NULL,
    high     BIGINT NOT NULL
);
CREATE INDEX idx_date_lookup ON idx_date (res_type, param, low, high, res_pk);
CREATE INDEX idx_date_res ON idx_date (res_pk);

CREATE TABLE idx_number (
    res_pk   BIGINT NOT NULL,
    res_type TEXT COLLATE "C" NOT NULL,
    param    TEXT COLLATE "C" NOT NULL,
    value    DOUBLE PRECISION NOT NULL
);
CREATE INDEX idx_number_lookup ON idx_number (res_type, param, value, res_pk);
CREATE INDEX idx_number_res ON idx_number (res_pk);

-- quantity: system/code of the unit (UCUM), unit as written, and the value.
CREATE TABLE idx_quantity (
    res_pk   BIGINT NOT NULL,
    res_type TEXT COLLATE "C" NOT NULL,
    param    TEXT COLLATE "C" NOT NULL,
    system   TEXT COLLATE "C" NOT NULL DEFAULT '',
    code     TEXT COLLATE "C" NOT NULL DEFAULT '',
    unit     TEXT COLLATE "C" NOT NULL DEFAULT '',
    value    DOUBLE PRECISION NOT NULL
);
CREATE INDEX idx_quantity_lookup ON idx_quantity (res_type, param, value, res_pk);
CREATE INDEX idx_quantity_res ON idx_quantity (res_pk);

CREATE TABLE idx_uri (
    res_pk   BIGINT NOT NULL,
    res_type TEXT COLLATE "C" NOT NULL,
    param    TEXT COLLATE "C" NOT NULL,
    value    TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_uri_lookup ON idx_uri (res_type, param, value, res_pk);
CREATE INDEX idx_uri_res ON idx_uri (res_pk);

-- composite: every R4 composite starts with a token component (system, code); the second
-- component fills the columns of its type (v_system/v_code for token or quantity units,
-- v_string, v_num for number/quantity, v_low/v_high for date).
CREATE TABLE idx_composite (
    res_pk   BIGINT NOT NULL,
    res_type TEXT COLLATE "C" NOT NULL,
    param    TEXT COLLATE "C" NOT NULL,
    system   TEXT COLLATE "C" NOT NULL DEFAULT '',
    code     TEXT COLLATE "C" NOT NULL DEFAULT '',
    v_system TEXT COLLATE "C" NOT NULL DEFAULT '',
    v_code   TEXT COLLATE "C" NOT NULL DEFAULT '',
    v_string TEXT COLLATE "C" NOT NULL DEFAULT '',
    v_num    DOUBLE PRECISION,
    v_low    BIGINT,
    v_high   BIGINT
);
CREATE INDEX idx_composite_lookup ON idx_composite (res_type, param, code, system, res_pk);
CREATE INDEX idx_composite_res ON idx_composite (res_pk);

-- Compartment membership (Patient/123 holds this resource), from the CompartmentDefinition.
CREATE TABLE idx_compartment (
    res_pk    BIGINT NOT NULL,
    res_type  TEXT COLLATE "C" NOT NULL,
    comp_type TEXT COLLATE "C" NOT NULL,
    comp_id   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_compartment_lookup ON idx_compartment (comp_type, comp_id, res_type, res_pk);
CREATE INDEX idx_compartment_res ON idx_compartment (res_pk);

-- +goose Down
DROP TABLE idx_compartment;
DROP TABLE idx_composite;
DROP TABLE idx_uri;
DROP TABLE idx_quantity;
DROP TABLE idx_number;
DROP TABLE idx_date;
DROP TABLE idx_reference;
DROP TABLE idx_token;
DROP TABLE idx_string;
