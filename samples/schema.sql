-- The sample agency's database: people, their passports and registration addresses.
-- Built by `smev-adapter samples build-db` (and by `serve` when the file is missing).
PRAGMA foreign_keys = ON;

CREATE TABLE person (
    id          INTEGER PRIMARY KEY,
    last_name   TEXT NOT NULL,
    first_name  TEXT NOT NULL,
    middle_name TEXT,
    birth_date  TEXT NOT NULL,          -- xs:date
    sex         TEXT NOT NULL CHECK (sex IN ('M', 'F'))
);

CREATE TABLE passport (
    id        INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES person(id),
    series    TEXT NOT NULL CHECK (length(series) = 4),
    number    TEXT NOT NULL CHECK (length(number) = 6),
    issued_on TEXT NOT NULL,            -- xs:date
    issued_by TEXT NOT NULL,
    UNIQUE (series, number)
);

CREATE TABLE address (
    id          INTEGER PRIMARY KEY,
    postal_code TEXT NOT NULL,
    region      TEXT NOT NULL,
    city        TEXT NOT NULL,
    street      TEXT NOT NULL,
    house       TEXT NOT NULL,
    flat        TEXT
);

CREATE TABLE registration (
    id              INTEGER PRIMARY KEY,
    person_id       INTEGER NOT NULL REFERENCES person(id),
    address_id      INTEGER NOT NULL REFERENCES address(id),
    registered_on   TEXT NOT NULL,      -- xs:date
    deregistered_on TEXT                -- NULL while current
);

CREATE INDEX registration_person ON registration(person_id);
