-- The example datasource shipped with the .deb (/usr/share/smev-adapter/example/example.db):
-- a tiny register of organisations, so that a fresh install passes `smev-adapter check`.
-- Rebuild example.db from this file with `packaging/build-example-db.sh`; a test checks they agree.
CREATE TABLE organisation (
  inn           TEXT PRIMARY KEY,   -- 10-digit taxpayer number of a legal entity
  ogrn          TEXT NOT NULL,      -- 13-digit state registration number
  name          TEXT NOT NULL,
  registered_on TEXT NOT NULL       -- ISO date
);
INSERT INTO organisation VALUES ('7701234567', '1027700000001', 'ООО «Пример»', '2002-09-12');
INSERT INTO organisation VALUES ('5408000000', '1025400000002', 'АО «Образец»', '1998-03-30');
