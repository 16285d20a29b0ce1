//! Builds the bundled sample agency's SQLite database from `samples/` (schema, fixed rows, name lists).
//! Deterministic: the same folder always yields the same database. It must not touch the node's own store.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

/// How many synthetic people the sample agency has, besides the fixed ones in `fixed.sql`.
pub const GENERATED_PEOPLE: usize = 5000;

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("cannot read sample file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sample file {path} is empty")]
    Empty { path: PathBuf },
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building the sample database {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// Employers of the generated people.
const GENERATED_EMPLOYERS: [&str; 5] = [
    "ООО «Северный ветер»",
    "АО «Уральские заводы»",
    "ГБУЗ «Городская поликлиника № 3»",
    "ИП Смирнова Е. А.",
    "ООО «Тёплый дом»",
];

/// A SNILS (`NNN-NNN-NNN CC`) with a correct check number for the 9-digit `number`.
pub fn snils(number: u64) -> String {
    let digits: Vec<u64> = format!("{:09}", number % 1_000_000_000)
        .bytes()
        .map(|b| u64::from(b - b'0'))
        .collect();
    let sum: u64 = digits.iter().zip((1..=9).rev()).map(|(d, w)| d * w).sum();
    let check = match sum % 101 {
        100 => 0,
        c => c,
    };
    let n = format!("{:09}", number % 1_000_000_000);
    format!("{}-{}-{} {check:02}", &n[0..3], &n[3..6], &n[6..9])
}

struct Lists {
    last: Vec<String>,
    first_male: Vec<String>,
    first_female: Vec<String>,
    patronymic_stems: Vec<String>,
    cities: Vec<(String, String, String)>,
    streets: Vec<String>,
}

/// The shape of the sample database (its `PRAGMA user_version`); bump it whenever `samples/` or the
/// generator change what the database holds, so that an older file is rebuilt instead of failing the mappings.
pub const SAMPLE_DB_VERSION: i32 = 2;

/// Builds the database at `out` from the sample folder `samples` unless a current one exists
/// (one built from an older sample shape is rebuilt). Returns whether it built.
pub fn ensure_database(samples: &Path, out: &Path) -> Result<bool, SampleError> {
    if out.exists() {
        let version = Connection::open_with_flags(out, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i32>(0)));
        if matches!(version, Ok(v) if v == SAMPLE_DB_VERSION) {
            return Ok(false);
        }
        tracing::warn!(
            path = %out.display(),
            "the sample database is from an older sample shape; rebuilding it"
        );
    }
    build_database(samples, out)?;
    Ok(true)
}

/// Builds the database into a temporary file beside `out`, then renames it, so a crash leaves no half database.
pub fn build_database(samples: &Path, out: &Path) -> Result<(), SampleError> {
    let schema = read(&samples.join("schema.sql"))?;
    let fixed = read(&samples.join("fixed.sql"))?;
    let lists = read_lists(&samples.join("names"))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| SampleError::Create {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let tmp = out.with_extension(format!("building-{}", uuid::Uuid::new_v4().simple()));
    let _ = std::fs::remove_file(&tmp);
    let sql = |source| SampleError::Sql {
        path: out.to_path_buf(),
        source,
    };
    {
        let mut conn = Connection::open(&tmp).map_err(sql)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")
            .map_err(sql)?;
        conn.execute_batch(&schema).map_err(sql)?;
        conn.execute_batch(&fixed).map_err(sql)?;
        let tx = conn.transaction().map_err(sql)?;
        generate(&tx, &lists).map_err(sql)?;
        tx.commit().map_err(sql)?;
        conn.execute_batch(&format!(
            "PRAGMA user_version = {SAMPLE_DB_VERSION}; ANALYZE; VACUUM;"
        ))
        .map_err(sql)?;
    }
    std::fs::rename(&tmp, out).map_err(|source| SampleError::Create {
        path: out.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String, SampleError> {
    std::fs::read_to_string(path).map_err(|source| SampleError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_list(path: &Path) -> Result<Vec<String>, SampleError> {
    let list: Vec<String> = read(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if list.is_empty() {
        return Err(SampleError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(list)
}

fn read_lists(dir: &Path) -> Result<Lists, SampleError> {
    let cities_path = dir.join("cities.txt");
    let cities: Vec<(String, String, String)> = read_list(&cities_path)?
        .into_iter()
        .filter_map(|l| {
            let mut parts = l.split('|').map(str::to_string);
            Some((parts.next()?, parts.next()?, parts.next()?))
        })
        .collect();
    if cities.is_empty() {
        return Err(SampleError::Empty { path: cities_path });
    }
    Ok(Lists {
        last: read_list(&dir.join("last.txt"))?,
        first_male: read_list(&dir.join("first_male.txt"))?,
        first_female: read_list(&dir.join("first_female.txt"))?,
        patronymic_stems: read_list(&dir.join("patronymic_stems.txt"))?,
        cities,
        streets: read_list(&dir.join("streets.txt"))?,
    })
}

/// A small deterministic generator (xorshift64*), so the sample data is the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn feminine(last: &str) -> String {
    if let Some(stem) = last.strip_suffix("ий") {
        format!("{stem}ая")
    } else if ["ов", "ев", "ёв", "ин", "ын"]
        .iter()
        .any(|s| last.ends_with(s))
    {
        format!("{last}а")
    } else {
        last.to_string()
    }
}

fn date(rng: &mut Rng, from_year: usize, years: usize) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        from_year + rng.below(years),
        1 + rng.below(12),
        1 + rng.below(28)
    )
}

fn generate(conn: &Connection, lists: &Lists) -> rusqlite::Result<()> {
    let mut rng = Rng(0x5EED_A6E9_C1A5_2024);
    let mut person = conn.prepare("INSERT INTO person (id, last_name, first_name, middle_name, birth_date, sex, snils) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
    let mut employer = conn.prepare("INSERT INTO employer (inn, name) VALUES (?1, ?2)")?;
    let mut income = conn.prepare("INSERT INTO income (person_id, employer_inn, period, amount, tax) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    let employers: Vec<(String, String)> = GENERATED_EMPLOYERS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (
                format!("{}", 7_800_000_000u64 + i as u64 * 1_111),
                (*name).to_string(),
            )
        })
        .collect();
    for (inn, name) in &employers {
        employer.execute(params![inn, name])?;
    }
    let mut passport = conn.prepare("INSERT OR IGNORE INTO passport (person_id, series, number, issued_on, issued_by) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    let mut address = conn.prepare("INSERT INTO address (id, postal_code, region, city, street, house, flat) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
    let mut registration = conn.prepare("INSERT INTO registration (person_id, address_id, registered_on, deregistered_on) VALUES (?1, ?2, ?3, ?4)")?;
    for i in 0..GENERATED_PEOPLE {
        let id = (1000 + i) as i64;
        let male = rng.below(2) == 0;
        let last = rng.pick(&lists.last).clone();
        let (last, first, middle) = if male {
            (
                last,
                rng.pick(&lists.first_male).clone(),
                format!("{}ич", rng.pick(&lists.patronymic_stems)),
            )
        } else {
            (
                feminine(&last),
                rng.pick(&lists.first_female).clone(),
                format!("{}на", rng.pick(&lists.patronymic_stems)),
            )
        };
        let birth = date(&mut rng, 1945, 60);
        person.execute(params![
            id,
            last,
            first,
            middle,
            birth,
            if male { "M" } else { "F" },
            snils(100_000_000 + i as u64 * 1_777)
        ])?;
        let (inn, _) = rng.pick(&employers);
        let monthly = 30_000 + rng.below(170_000) as i64;
        for month in 1..=3 {
            let kopecks = monthly * 100 + rng.below(100) as i64;
            income.execute(params![
                id,
                inn,
                format!("2024-{month:02}-01"),
                kopecks as f64 / 100.0,
                (kopecks * 13 / 100) as f64 / 100.0
            ])?;
        }
        let (postal, region, city) = rng.pick(&lists.cities).clone();
        let series = format!("{:02}{:02}", 1 + rng.below(98), rng.below(25));
        let number = format!("{:06}", rng.below(1_000_000));
        passport.execute(params![
            id,
            series,
            number,
            date(&mut rng, 2000, 24),
            format!("ГУ МВД России, {city}")
        ])?;
        let flat = (rng.below(3) > 0).then(|| (1 + rng.below(300)).to_string());
        let house = (1 + rng.below(150)).to_string();
        address.execute(params![
            id,
            postal,
            region,
            city,
            rng.pick(&lists.streets),
            house,
            flat
        ])?;
        let moved_out = rng.below(10) == 0;
        let deregistered = moved_out.then(|| date(&mut rng, 2021, 4));
        registration.execute(params![id, id, date(&mut rng, 2000, 21), deregistered])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_database_of_an_older_shape_is_rebuilt_and_a_current_one_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("agency.db");
        Connection::open(&db)
            .and_then(|c| c.execute_batch("CREATE TABLE person (id INTEGER PRIMARY KEY);"))
            .expect("old db");
        let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        assert!(ensure_database(&samples, &db).expect("ensure"), "rebuilt");
        let kinship: i64 = Connection::open(&db)
            .and_then(|c| c.query_row("SELECT count(*) FROM kinship", [], |r| r.get(0)))
            .expect("new tables");
        assert!(kinship > 0);
        assert!(!ensure_database(&samples, &db).expect("ensure"), "kept");
    }

    #[test]
    fn snils_check_numbers_follow_the_rule() {
        assert_eq!(snils(112_233_445), "112-233-445 95");
        assert_eq!(snils(123_456_789), "123-456-789 64");
        assert_eq!(snils(87_654_303), "087-654-303 00");
        assert_eq!(snils(145_226_371), "145-226-371 45");
    }

    #[test]
    fn feminine_surnames_follow_russian_rules() {
        assert_eq!(feminine("Иванов"), "Иванова");
        assert_eq!(feminine("Высоцкий"), "Высоцкая");
        assert_eq!(feminine("Ильин"), "Ильина");
        assert_eq!(feminine("Левин"), "Левина");
    }
}
