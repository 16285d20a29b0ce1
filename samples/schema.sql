-- The sample agency's database: people, their passports, registration addresses, families and incomes.
-- Built by `smev-adapter samples build-db` (and by `serve` when the file is missing). Portable: the same
-- text creates the tables in SQLite and in PostgreSQL (the tests load it into both).

CREATE TABLE person (
    id          INTEGER PRIMARY KEY,
    last_name   TEXT NOT NULL,
    first_name  TEXT NOT NULL,
    middle_name TEXT,
    birth_date  TEXT NOT NULL,          -- xs:date
    sex         TEXT NOT NULL CHECK (sex IN ('M', 'F')),
    snils       TEXT UNIQUE             -- insurance number, 'NNN-NNN-NNN CC'
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

-- Family ties, one row per direction: (person, relative, what the relative is to the person).
CREATE TABLE kinship (
    person_id   INTEGER NOT NULL REFERENCES person(id),
    relative_id INTEGER NOT NULL REFERENCES person(id),
    relation    TEXT NOT NULL CHECK (relation IN ('SPOUSE', 'CHILD', 'PARENT')),
    PRIMARY KEY (person_id, relative_id)
);

CREATE TABLE employer (
    inn  TEXT PRIMARY KEY,              -- taxpayer number of the organisation, 10 digits
    name TEXT NOT NULL
);

-- Monthly income reported by employers: period is the first day of the month.
CREATE TABLE income (
    id           INTEGER PRIMARY KEY,
    person_id    INTEGER NOT NULL REFERENCES person(id),
    employer_inn TEXT NOT NULL REFERENCES employer(inn),
    period       TEXT NOT NULL,         -- xs:date, YYYY-MM-01
    amount       NUMERIC(12, 2) NOT NULL,
    tax          NUMERIC(12, 2) NOT NULL
);

CREATE INDEX income_person_period ON income(person_id, period);
