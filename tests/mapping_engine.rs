//! The mapping engine on both datasources (SQLite and the real PostgreSQL): every parameter type and
//! validation failure, SQL injection, zero rows, max rows, timeouts, writes, XSD, the sample mappings.

mod common;

use common::backends::{Backend, Kind, load_config, workspace};
use smev_adapter::datasource::{BindValue, Datasources};
use smev_adapter::mapping::{DryRun, DryRunError, MappingSet, Outcome, dry_run};

const SETUP: &str = r#"
CREATE TABLE thing (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL, price NUMERIC(10, 2) NOT NULL,
    made DATE NOT NULL, seen TIMESTAMP NOT NULL, active BOOLEAN NOT NULL, note TEXT
);
INSERT INTO thing VALUES
    (1, 'Alpha', 5, 10.50, '2024-01-15', '2024-01-15 10:30:00', TRUE, 'x < y & "z"'),
    (2, 'Beta', 7, 99.99, '2024-02-01', '2024-02-01 08:00:00', FALSE, NULL),
    (3, 'O''Brien', 1, 0.10, '2023-12-31', '2023-12-31 23:59:59', TRUE, NULL);
CREATE TABLE log (message_id TEXT PRIMARY KEY, name TEXT NOT NULL);
"#;

const THING_FIELDS: &str = r#"
[response]
element = "t:Found"

[response.each]
element = "t:Thing"
fields = [
  { column = "id", element = "t:Id", type = "int" },
  { column = "name", element = "t:Name" },
  { column = "qty", element = "t:Qty", type = "int" },
  { column = "price", element = "t:Price", type = "decimal", scale = 2 },
  { column = "made", element = "t:Made", type = "date" },
  { column = "seen", element = "t:Seen", type = "datetime" },
  { column = "active", element = "t:Active", type = "bool" },
  { column = "note", element = "t:Note" },
]
"#;

fn typed_mapping(request: &str, on_no_rows: &str) -> String {
    format!(
        r#"request = "{{urn:t}}{request}"
datasource = "db"
namespaces = {{ t = "urn:t" }}
on_no_rows = "{on_no_rows}"
max_rows = 10

[params]
name = {{ path = "t:Name", type = "string", max_length = 40 }}
qty = {{ path = "t:MinQty", type = "int", min = 0, max = 1000 }}
price = {{ path = "t:MaxPrice", type = "decimal", min = "0", max = "1000000" }}
made = {{ path = "t:MadeFrom", type = "date", min = "2000-01-01" }}
seen = {{ path = "t:SeenBefore", type = "datetime" }}
active = {{ path = "t:Active", type = "bool" }}
code = {{ path = "t:Code", type = "string", required = false, default = "ANY", pattern = "^[A-Z]+$", min_length = 3 }}

[query]
sql = """
SELECT id, name, qty, price, made, seen, active, note FROM thing
 WHERE name = :name AND qty >= :qty AND price <= :price AND made >= :made AND seen <= :seen
   AND active = :active AND CAST(:code AS TEXT) <> ''
 ORDER BY id
"""
{THING_FIELDS}"#
    )
}

/// A mapping set over one backend, ready for dry runs.
struct Harness {
    backend: Backend,
    _dir: tempfile::TempDir,
    datasources: Datasources,
    set: MappingSet,
}

impl Harness {
    fn new(backend: Backend, mappings: &[(&str, &str)]) -> Harness {
        let (dir, path) = workspace(&backend.datasource_toml("db"), mappings);
        let config = load_config(&path);
        let datasources = Datasources::open(&config.datasources).expect("datasources open");
        let set = MappingSet::load(&config.mappings_dir, &datasources)
            .unwrap_or_else(|p| panic!("{:?}: mappings invalid:\n{p}", backend.kind));
        Harness {
            backend,
            _dir: dir,
            datasources,
            set,
        }
    }

    fn run(&self, payload: &str) -> Result<DryRun, DryRunError> {
        dry_run(
            &self.set,
            &self.datasources,
            payload,
            None,
            &Default::default(),
        )
    }

    fn outcome(&self, payload: &str) -> Outcome {
        match self.run(payload) {
            Ok(r) => r.outcome,
            Err(e) => panic!("{:?}: {e}", self.backend.kind),
        }
    }

    /// Runs the mapping for real (not a dry run), as the provider does.
    fn execute(&self, payload: &str, message_id: &str) -> Outcome {
        let doc = roxmltree::Document::parse(payload).expect("payload");
        let root = doc.root_element();
        let m = self
            .set
            .route(
                root.tag_name().namespace().unwrap_or(""),
                root.tag_name().name(),
            )
            .expect("mapping");
        let params = m.extract(&doc, root).expect("valid params");
        m.execute(&self.datasources, &params, message_id)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;")
}

fn find(request: &str, fields: &[(&str, &str)]) -> String {
    let mut x = format!("<t:{request} xmlns:t=\"urn:t\">");
    for (k, v) in fields {
        x.push_str(&format!("<t:{k}>{}</t:{k}>", escape(v)));
    }
    x.push_str(&format!("</t:{request}>"));
    x
}

const GOOD: [(&str, &str); 6] = [
    ("Name", "Alpha"),
    ("MinQty", "1"),
    ("MaxPrice", "100"),
    ("MadeFrom", "2024-01-01"),
    ("SeenBefore", "2024-06-01T00:00:00"),
    ("Active", "true"),
];

fn with(changes: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    GOOD.iter()
        .map(|(k, v)| {
            let v = changes
                .iter()
                .find(|(ck, _)| ck == k)
                .map_or(v.to_string(), |(_, cv)| cv.to_string());
            (*k, v)
        })
        .collect()
}

fn payload(request: &str, fields: &[(&'static str, String)]) -> String {
    let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    find(request, &borrowed)
}

fn answer_text(o: Outcome) -> String {
    match o {
        Outcome::Answer(x) => String::from_utf8(x).expect("utf8"),
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[test]
fn every_parameter_type_is_extracted_bound_and_rendered_the_same_on_both_databases() {
    for b in Backend::both(SETUP) {
        let kind = b.kind;
        let h = Harness::new(b, &[("find.toml", &typed_mapping("Find", "no_data"))]);
        let run = h.run(&payload("Find", &with(&[]))).expect("runs");
        let values: Vec<(String, BindValue)> = run.params.clone();
        assert!(
            values.contains(&("qty".into(), BindValue::Int(1))),
            "{values:?}"
        );
        assert!(values.contains(&("price".into(), BindValue::Decimal("100".into()))));
        assert!(values.contains(&("made".into(), BindValue::Date("2024-01-01".into()))));
        assert!(values.contains(&(
            "seen".into(),
            BindValue::DateTime("2024-06-01T00:00:00".into())
        )));
        assert!(values.contains(&("active".into(), BindValue::Bool(true))));
        assert!(
            values.contains(&("code".into(), BindValue::Text("ANY".into()))),
            "an absent optional parameter gets its default: {values:?}"
        );
        assert_eq!(
            answer_text(run.outcome),
            r#"<t:Found xmlns:t="urn:t"><t:Thing><t:Id>1</t:Id><t:Name>Alpha</t:Name><t:Qty>5</t:Qty><t:Price>10.50</t:Price><t:Made>2024-01-15</t:Made><t:Seen>2024-01-15T10:30:00</t:Seen><t:Active>true</t:Active><t:Note>x &lt; y &amp; "z"</t:Note></t:Thing></t:Found>"#,
            "{kind:?}"
        );
        // A quote in a string value is data: O'Brien is found, NULL note is left out.
        let obrien = with(&[
            ("Name", "O'Brien"),
            ("MadeFrom", "2023-01-01"),
            ("SeenBefore", "2024-01-01T00:00:00+03:00"),
        ]);
        let xml = answer_text(h.outcome(&payload("Find", &obrien)));
        assert!(
            xml.contains("<t:Name>O'Brien</t:Name><t:Qty>1</t:Qty><t:Price>0.10</t:Price><t:Made>2023-12-31</t:Made><t:Seen>2023-12-31T23:59:59</t:Seen><t:Active>true</t:Active></t:Thing>"),
            "{kind:?}: {xml}"
        );
        let code = payload(
            "Find",
            &[with(&[]), vec![("Code", "ABC".to_string())]].concat(),
        );
        let run = h.run(&code).expect("runs");
        assert!(
            run.params
                .contains(&("code".into(), BindValue::Text("ABC".into())))
        );
    }
}

/// (case, request fields, the element the error points at ("" = the payload), message fragment)
type Case = (
    &'static str,
    Vec<(&'static str, String)>,
    &'static str,
    &'static str,
);

#[test]
fn every_validation_failure_is_invalid_content_pointing_at_the_element() {
    let cases: Vec<Case> = vec![
        (
            "missing",
            GOOD.iter()
                .skip(1)
                .map(|(k, v)| (*k, v.to_string()))
                .collect(),
            "",
            "t:Name is missing",
        ),
        (
            "int",
            with(&[("MinQty", "five")]),
            "MinQty",
            "is not an integer",
        ),
        (
            "int below min",
            with(&[("MinQty", "-1")]),
            "MinQty",
            "below the minimum 0",
        ),
        (
            "int above max",
            with(&[("MinQty", "1001")]),
            "MinQty",
            "above the maximum 1000",
        ),
        (
            "decimal",
            with(&[("MaxPrice", "1,5")]),
            "MaxPrice",
            "is not a decimal",
        ),
        (
            "decimal above max",
            with(&[("MaxPrice", "1000000.01")]),
            "MaxPrice",
            "above the maximum",
        ),
        (
            "date",
            with(&[("MadeFrom", "2024-02-30")]),
            "MadeFrom",
            "is not a date",
        ),
        (
            "date below min",
            with(&[("MadeFrom", "1999-12-31")]),
            "MadeFrom",
            "below the minimum 2000-01-01",
        ),
        (
            "datetime",
            with(&[("SeenBefore", "2024-06-01 00:00")]),
            "SeenBefore",
            "is not a date-time",
        ),
        (
            "bool",
            with(&[("Active", "yes")]),
            "Active",
            "is not a boolean",
        ),
        (
            "max_length",
            with(&[("Name", &"x".repeat(41))]),
            "Name",
            "at most 40",
        ),
        (
            "pattern",
            [with(&[]), vec![("Code", "abc".to_string())]].concat(),
            "Code",
            "does not match ^[A-Z]+$",
        ),
        (
            "min_length",
            [with(&[]), vec![("Code", "AB".to_string())]].concat(),
            "Code",
            "at least 3",
        ),
        (
            "twice",
            [with(&[]), vec![("Active", "false".to_string())]].concat(),
            "Active",
            "appears 2 times",
        ),
    ];
    for b in Backend::both(SETUP) {
        let kind = b.kind;
        let h = Harness::new(b, &[("find.toml", &typed_mapping("Find", "no_data"))]);
        for (case, fields, element, message) in &cases {
            let text = payload("Find", fields);
            let err = match h.run(&text) {
                Err(DryRunError::Invalid { errors, .. }) => errors,
                other => panic!("{kind:?} {case}: expected InvalidContent, got {other:?}"),
            };
            assert_eq!(err.len(), 1, "{kind:?} {case}: {err:?}");
            assert!(
                err[0].message.contains(message),
                "{kind:?} {case}: {}",
                err[0].message
            );
            let at = if element.is_empty() {
                0
            } else {
                // The last occurrence: for "twice" the second element is the offending one.
                text.rfind(&format!("<t:{element}>"))
                    .expect("element in payload")
            };
            assert_eq!(
                err[0].position.offset,
                text[..at].chars().count() + 1,
                "{kind:?} {case}: the error points at <t:{element}>"
            );
        }
    }
}

fn list_mapping(kind: Kind) -> String {
    let condition = match kind {
        Kind::Sqlite => "name IN (SELECT value FROM json_each(:names))",
        Kind::Postgres => "name = ANY(:names)",
    };
    format!(
        r#"request = "{{urn:t}}Names"
datasource = "db"
namespaces = {{ t = "urn:t" }}

[params]
names = {{ path = "t:Name", repeated = true, max_items = 5, max_length = 40 }}

[query]
sql = "SELECT id, name, qty, price, made, seen, active, note FROM thing WHERE {condition} ORDER BY id"
{THING_FIELDS}"#
    )
}

#[test]
fn repeated_elements_bind_as_one_list_parameter() {
    for b in Backend::both(SETUP) {
        let kind = b.kind;
        let h = Harness::new(b, &[("names.toml", &list_mapping(kind))]);
        let xml = answer_text(h.outcome(&find(
            "Names",
            &[("Name", "Beta"), ("Name", "O'Brien"), ("Name", "Nobody")],
        )));
        assert!(
            xml.contains("<t:Id>2</t:Id>") && xml.contains("<t:Id>3</t:Id>"),
            "{kind:?}: {xml}"
        );
        assert!(!xml.contains("<t:Id>1</t:Id>"), "{kind:?}: {xml}");
        let six: Vec<(&str, &str)> = (0..6).map(|_| ("Name", "Alpha")).collect();
        assert!(
            matches!(
                h.run(&find("Names", &six)),
                Err(DryRunError::Invalid { .. })
            ),
            "{kind:?}: more items than max_items is invalid"
        );
    }
}

#[test]
fn sql_injection_through_every_parameter_type_stays_inert() {
    for b in Backend::both(SETUP) {
        let kind = b.kind;
        let h = Harness::new(
            b,
            &[
                ("find.toml", &typed_mapping("Find", "no_data")),
                ("names.toml", &list_mapping(kind)),
            ],
        );
        // Strings reach the database as values: they match nothing and change nothing.
        for evil in [
            "Alpha' OR '1'='1",
            "Alpha'; DROP TABLE thing; --",
            "Alpha\"); DELETE FROM thing; --",
            "' UNION SELECT 1,2,3,4,5,6,7,8 --",
        ] {
            assert_eq!(
                h.outcome(&payload("Find", &with(&[("Name", evil)]))),
                Outcome::NoData,
                "{kind:?}: {evil}"
            );
        }
        let list = h.outcome(&find(
            "Names",
            &[
                ("Name", "Alpha"),
                ("Name", "x') OR 1=1 --"),
                ("Name", "\"]')"),
            ],
        ));
        let xml = answer_text(list);
        assert_eq!(
            xml.matches("<t:Thing>").count(),
            1,
            "{kind:?}: only Alpha matches: {xml}"
        );
        // Typed values never get that far: they are refused as malformed.
        for (element, evil) in [
            ("MinQty", "1 OR 1=1"),
            ("MaxPrice", "1); DROP TABLE thing; --"),
            ("MadeFrom", "2024-01-01' OR '1'='1"),
            ("SeenBefore", "2024-01-01T00:00:00' OR '1'='1"),
            ("Active", "true OR 1=1"),
        ] {
            assert!(
                matches!(
                    h.run(&payload("Find", &with(&[(element, evil)]))),
                    Err(DryRunError::Invalid { .. })
                ),
                "{kind:?}: {element} = {evil}"
            );
        }
        assert_eq!(
            h.backend.count("SELECT count(*) FROM thing"),
            3,
            "{kind:?}: the table is intact"
        );
        // And the honest request still works.
        assert!(matches!(
            h.outcome(&payload("Find", &with(&[]))),
            Outcome::Answer(_)
        ));
    }
}

#[test]
fn zero_rows_answer_no_data_or_an_empty_element_as_configured() {
    for b in Backend::both(SETUP) {
        let kind = b.kind;
        let h = Harness::new(
            b,
            &[
                ("find.toml", &typed_mapping("Find", "no_data")),
                ("find-empty.toml", &typed_mapping("FindOrEmpty", "empty")),
            ],
        );
        let nobody = with(&[("Name", "Nobody")]);
        assert_eq!(
            h.outcome(&payload("Find", &nobody)),
            Outcome::NoData,
            "{kind:?}"
        );
        assert_eq!(
            answer_text(h.outcome(&payload("FindOrEmpty", &nobody))),
            r#"<t:Found xmlns:t="urn:t"></t:Found>"#,
            "{kind:?}"
        );
    }
}

#[test]
fn more_rows_than_max_rows_is_a_failure_answer() {
    let mapping = r#"request = "{urn:t}All"
datasource = "db"
namespaces = { t = "urn:t" }
max_rows = 2

[params]
qty = { path = "t:MinQty", type = "int" }

[query]
sql = "SELECT id FROM thing WHERE qty >= :qty ORDER BY id"

[response]
element = "t:All"
each = { element = "t:Id", fields = [ { column = "id", element = "t:Value" } ] }
"#;
    for b in Backend::both(SETUP) {
        let kind = b.kind;
        let h = Harness::new(b, &[("all.toml", mapping)]);
        match h.outcome(&find("All", &[("MinQty", "0")])) {
            Outcome::Failed(reason) => {
                assert!(reason.contains("more than 2 rows"), "{kind:?}: {reason}")
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        assert_eq!(
            answer_text(h.outcome(&find("All", &[("MinQty", "5")])))
                .matches("<t:Id>")
                .count(),
            2,
            "{kind:?}: at the limit is fine"
        );
    }
}

#[test]
fn a_statement_over_its_timeout_is_cancelled_answers_failure_and_the_datasource_keeps_working() {
    // A marker only this run's statement carries, to find it among the server's sessions.
    let marker = format!("slow_{}", uuid::Uuid::new_v4().simple());
    for b in Backend::both(SETUP) {
        let kind = b.kind;
        let slow_sql = match kind {
            Kind::Sqlite => {
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000000) SELECT max(x) AS name FROM c WHERE :name <> ''".to_string()
            }
            Kind::Postgres => format!(
                "SELECT name AS {marker} FROM thing CROSS JOIN LATERAL (SELECT pg_sleep(60)) s WHERE name = :name"
            ),
        };
        let slow = format!(
            r#"request = "{{urn:t}}Slow"
datasource = "db"
namespaces = {{ t = "urn:t" }}

[params]
name = {{ path = "t:Name" }}

[query]
timeout = "300ms"
sql = "{slow_sql}"

[response]
element = "t:Slow"
fields = [ {{ column = "{column}", element = "t:Name" }} ]
"#,
            column = if kind == Kind::Postgres {
                marker.as_str()
            } else {
                "name"
            }
        );
        let h = Harness::new(
            b,
            &[
                ("slow.toml", &slow),
                ("find.toml", &typed_mapping("Find", "no_data")),
            ],
        );
        match h.outcome(&find("Slow", &[("Name", "Alpha")])) {
            Outcome::Failed(reason) => assert!(reason.contains("timeout"), "{kind:?}: {reason}"),
            other => panic!("{kind:?}: expected FAILURE, got {other:?}"),
        }
        assert!(
            matches!(h.outcome(&payload("Find", &with(&[]))), Outcome::Answer(_)),
            "{kind:?}: the datasource answers the next request"
        );
        if kind == Kind::Postgres {
            // The server was told to cancel: the sleeping statement goes away (bounded wait).
            let mut remaining = -1;
            for _ in 0..100 {
                remaining = h.backend.count(&format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%{marker} FROM%' AND pid <> pg_backend_pid()"
                ));
                if remaining == 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            assert_eq!(
                remaining, 0,
                "the timed-out statement was cancelled on the server"
            );
        }
    }
}

#[test]
fn a_writing_mapping_runs_in_a_transaction_with_the_message_id_and_reads_stay_read_only() {
    let write = r#"request = "{urn:t}Log"
datasource = "db"
namespaces = { t = "urn:t" }
on_no_rows = "empty"

[params]
name = { path = "t:Name" }

[query]
writes = true
sql = "INSERT INTO log (message_id, name) VALUES (:message_id, :name) ON CONFLICT (message_id) DO NOTHING RETURNING message_id, name"

[response]
element = "t:Logged"
fields = [ { column = "message_id", element = "t:Id" }, { column = "name", element = "t:Name" } ]
"#;
    let sneaky = write
        .replace("{urn:t}Log\"", "{urn:t}Sneaky\"")
        .replace("writes = true\n", "");
    for b in Backend::both(SETUP) {
        let kind = b.kind;
        let h = Harness::new(b, &[("log.toml", write), ("sneaky.toml", &sneaky)]);
        let request = find("Log", &[("Name", "Alpha")]);
        // A dry run rolls its transaction back.
        assert!(matches!(h.outcome(&request), Outcome::Answer(_)));
        assert_eq!(
            h.backend.count("SELECT count(*) FROM log"),
            0,
            "{kind:?}: dry run wrote nothing"
        );
        let first = answer_text(h.execute(&request, "11111111-2222-1333-8444-555555555555"));
        assert!(
            first.contains("<t:Id>11111111-2222-1333-8444-555555555555</t:Id>"),
            "{kind:?}: {first}"
        );
        // The same message again: the mapping's own idempotency makes it a no-op.
        let again = answer_text(h.execute(&request, "11111111-2222-1333-8444-555555555555"));
        assert_eq!(
            again, r#"<t:Logged xmlns:t="urn:t"></t:Logged>"#,
            "{kind:?}"
        );
        assert_eq!(h.backend.count("SELECT count(*) FROM log"), 1, "{kind:?}");
        // A mapping that does not declare writes cannot write.
        match h.execute(
            &find("Sneaky", &[("Name", "Beta")]),
            "22222222-2222-1333-8444-555555555555",
        ) {
            Outcome::Failed(reason) => assert!(reason.contains("read"), "{kind:?}: {reason}"),
            other => panic!("{kind:?}: a read-only mapping wrote: {other:?}"),
        }
        assert_eq!(h.backend.count("SELECT count(*) FROM log"), 1, "{kind:?}");
    }
}

#[test]
fn check_prepares_sql_on_the_real_database_and_names_missing_columns() {
    let bad_table = typed_mapping("Find", "no_data").replace("FROM thing", "FROM thingz");
    let bad_column = typed_mapping("Other", "no_data").replace(
        "{ column = \"note\", element = \"t:Note\" }",
        "{ column = \"notes\", element = \"t:Note\" }",
    );
    for b in Backend::both(SETUP) {
        let kind = b.kind;
        let (_dir, path) = workspace(
            &b.datasource_toml("db"),
            &[("a.toml", &bad_table), ("b.toml", &bad_column)],
        );
        let config = load_config(&path);
        let datasources = Datasources::open(&config.datasources).expect("open");
        let problems = MappingSet::load(&config.mappings_dir, &datasources)
            .expect_err("invalid")
            .0;
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let sql_line = bad_table
            .lines()
            .position(|l| l.starts_with("sql = "))
            .expect("sql")
            + 1;
        assert!(
            text.iter()
                .any(|p| p.contains(&format!("a.toml:{sql_line}:")) && p.contains("thingz")),
            "{kind:?}: {text:?}"
        );
        let note_line = bad_column
            .lines()
            .position(|l| l.contains("\"notes\""))
            .expect("notes")
            + 1;
        assert!(
            text.iter()
                .any(|p| p.contains(&format!("b.toml:{note_line}:"))
                    && p.contains("column `notes` is not returned")),
            "{kind:?}: {text:?}"
        );
    }
}

#[test]
fn an_invalid_response_is_a_failure_and_an_invalid_request_points_at_its_element() {
    let xsd = r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t" xmlns:t="urn:t" elementFormDefault="qualified">
  <xs:element name="Ask"><xs:complexType><xs:sequence><xs:element name="Name" type="xs:string"/><xs:element name="Qty" type="xs:int"/></xs:sequence></xs:complexType></xs:element>
  <xs:element name="Short"><xs:complexType><xs:sequence><xs:element name="Name"><xs:simpleType><xs:restriction base="xs:string"><xs:maxLength value="4"/></xs:restriction></xs:simpleType></xs:element></xs:sequence></xs:complexType></xs:element>
</xs:schema>"#;
    let mapping = r#"request = "{urn:t}Ask"
datasource = "db"
namespaces = { t = "urn:t" }

[xsd]
request = "t.xsd"
response = "t.xsd"

[params]
name = { path = "t:Name" }

[query]
sql = "SELECT name FROM thing WHERE name = :name"

[response]
element = "t:Short"
fields = [ { column = "name", element = "t:Name" } ]
"#;
    for b in Backend::both(SETUP) {
        let kind = b.kind;
        let (_dir, path) = workspace(
            &b.datasource_toml("db"),
            &[("ask.toml", mapping), ("t.xsd", xsd)],
        );
        let config = load_config(&path);
        let datasources = Datasources::open(&config.datasources).expect("open");
        let set = MappingSet::load(&config.mappings_dir, &datasources).expect("valid");
        let run = |p: &str| dry_run(&set, &datasources, p, None, &Default::default());
        // "Beta" fits xs:maxLength 4; "Alpha" does not: the node never sends it.
        let ok = run("<t:Ask xmlns:t=\"urn:t\"><t:Name>Beta</t:Name><t:Qty>1</t:Qty></t:Ask>")
            .expect("runs");
        assert!(
            matches!(ok.outcome, Outcome::Answer(_)),
            "{kind:?}: {:?}",
            ok.outcome
        );
        let bad = run("<t:Ask xmlns:t=\"urn:t\"><t:Name>Alpha</t:Name><t:Qty>1</t:Qty></t:Ask>")
            .expect("runs");
        match bad.outcome {
            Outcome::Failed(reason) => assert!(
                reason.contains("not valid against") && reason.contains("maxLength"),
                "{kind:?}: {reason}"
            ),
            other => panic!("{kind:?}: an invalid response was produced: {other:?}"),
        }
        let request =
            "<t:Ask xmlns:t=\"urn:t\">\n  <t:Name>Beta</t:Name>\n  <t:Qty>one</t:Qty>\n</t:Ask>";
        match run(request) {
            Err(DryRunError::Invalid { errors, .. }) => {
                assert!(
                    errors[0].message.contains("'one' is not a valid value"),
                    "{errors:?}"
                );
                assert_eq!(
                    (errors[0].position.line, errors[0].position.column),
                    (3, 3),
                    "{errors:?}"
                );
            }
            other => panic!("{kind:?}: expected InvalidContent, got {other:?}"),
        }
    }
}

fn sample_sql() -> String {
    let repo = common::repo();
    let schema = std::fs::read_to_string(repo.join("samples/schema.sql")).expect("schema");
    let fixed = std::fs::read_to_string(repo.join("samples/fixed.sql")).expect("fixed");
    format!("{schema}\n{fixed}")
}

#[test]
fn the_sample_requests_get_the_expected_responses_on_both_databases() {
    let repo = common::repo();
    for b in Backend::both(&sample_sql()) {
        let kind = b.kind;
        let ds = b.datasource_toml("agency");
        let (_dir, path) = workspace(&ds, &[]);
        let config_text = std::fs::read_to_string(&path).expect("config").replace(
            "dir = \"mappings\"",
            &format!("dir = \"{}/mappings\"", repo.display()),
        );
        std::fs::write(&path, config_text).expect("write");
        let config = load_config(&path);
        let datasources = Datasources::open(&config.datasources).expect("open");
        let set = MappingSet::load(&config.mappings_dir, &datasources)
            .unwrap_or_else(|p| panic!("{kind:?}: the sample mappings load:\n{p}"));
        for name in ["happy", "family", "income"] {
            let request =
                std::fs::read_to_string(repo.join(format!("samples/requests/{name}.xml")))
                    .expect("request");
            let expected =
                std::fs::read_to_string(repo.join(format!("samples/responses/{name}.xml")))
                    .expect("response");
            let run =
                dry_run(&set, &datasources, &request, None, &config.limits.xml).expect("runs");
            assert_eq!(
                answer_text(run.outcome),
                expected.trim_end(),
                "{kind:?} {name}"
            );
        }
        let no_data =
            std::fs::read_to_string(repo.join("samples/requests/no-data.xml")).expect("request");
        let run = dry_run(&set, &datasources, &no_data, None, &config.limits.xml).expect("runs");
        assert_eq!(run.outcome, Outcome::NoData, "{kind:?}");
        let invalid = std::fs::read_to_string(repo.join("samples/requests/income-invalid.xml"))
            .expect("request");
        assert!(
            matches!(
                dry_run(&set, &datasources, &invalid, None, &config.limits.xml),
                Err(DryRunError::Invalid { .. })
            ),
            "{kind:?}"
        );
    }
}

/// What the local PostgreSQL says about TLS: (`ssl` on?, its certificate file).
fn pg_tls_settings() -> (bool, String) {
    let url = common::backends::pg_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        let driver = tokio::spawn(conn);
        let row = client
            .query_one(
                "SELECT current_setting('ssl'), current_setting('ssl_cert_file')",
                &[],
            )
            .await
            .expect("settings");
        let out = (row.get::<_, String>(0) == "on", row.get::<_, String>(1));
        drop(client);
        let _ = driver.await;
        out
    })
}

#[test]
fn postgres_over_tls_verifies_the_server_certificate() {
    let b = Backend::postgres(SETUP);
    let (ssl_on, cert) = pg_tls_settings();
    let pg: tokio_postgres::Config = common::backends::pg_url().parse().expect("url");
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let user = pg.get_user().unwrap_or("postgres");
    let db = pg.get_dbname().unwrap_or("test");
    let schema = b.pg_schema.clone().expect("schema");
    // The certificate names `localhost` (Debian's default snakeoil certificate does).
    let url =
        format!("postgresql://{user}@localhost:{port}/{db}?options=-c%20search_path%3D{schema}");
    let mapping = r#"request = "{urn:t}Tls"
datasource = "db"
namespaces = { t = "urn:t" }

[params]
name = { path = "t:Name" }

[query]
sql = "SELECT CASE WHEN s.ssl THEN 'on' ELSE 'off' END AS tls, t.name FROM pg_stat_ssl s, thing t WHERE s.pid = pg_backend_pid() AND t.name = :name"

[response]
element = "t:Tls"
fields = [ { column = "tls", element = "t:On" }, { column = "name", element = "t:Name" } ]
"#;
    let trusted = format!(
        "[datasources.db]\nkind = \"postgres\"\nurl = \"{url}\"\ntls = true\nca_file = \"{cert}\"\nconnect_timeout = \"5s\"\n"
    );
    let (_dir, path) = workspace(&trusted, &[("tls.toml", mapping)]);
    let config = load_config(&path);
    let datasources = Datasources::open(&config.datasources).expect("open");
    let loaded = MappingSet::load(&config.mappings_dir, &datasources);
    if !ssl_on {
        // A server without TLS is refused rather than used in clear text.
        let problems = loaded
            .expect_err("tls = true needs a TLS server")
            .to_string();
        assert!(
            problems.to_lowercase().contains("tls") || problems.to_lowercase().contains("ssl"),
            "{problems}"
        );
        return;
    }
    let set =
        loaded.unwrap_or_else(|p| panic!("TLS with the server's certificate as CA works:\n{p}"));
    let run = dry_run(
        &set,
        &datasources,
        "<t:Tls xmlns:t=\"urn:t\"><t:Name>Alpha</t:Name></t:Tls>",
        None,
        &Default::default(),
    )
    .expect("runs");
    assert_eq!(
        answer_text(run.outcome),
        r#"<t:Tls xmlns:t="urn:t"><t:On>on</t:On><t:Name>Alpha</t:Name></t:Tls>"#,
        "the session really is encrypted"
    );
    // With another CA the server's certificate is not trusted, and nothing is sent in clear text instead.
    let other_ca = b.dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, self_signed_pem()).expect("write CA");
    let untrusted = format!(
        "[datasources.db]\nkind = \"postgres\"\nurl = \"{url}\"\ntls = true\nca_file = \"{}\"\nconnect_timeout = \"5s\"\n",
        other_ca.display()
    );
    let (_dir2, path2) = workspace(&untrusted, &[("tls.toml", mapping)]);
    let config2 = load_config(&path2);
    let datasources2 = Datasources::open(&config2.datasources).expect("open");
    let problems = MappingSet::load(&config2.mappings_dir, &datasources2)
        .expect_err("an untrusted certificate is refused")
        .to_string();
    assert!(problems.contains("certificate verify failed"), "{problems}");
}

/// A throwaway self-signed CA certificate (PEM).
fn self_signed_pem() -> Vec<u8> {
    use openssl::{
        asn1::Asn1Time,
        bn::BigNum,
        ec::{EcGroup, EcKey},
        hash::MessageDigest,
        nid::Nid,
        pkey::PKey,
        x509::{X509, X509NameBuilder},
    };
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "not the database's CA")
        .expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    b.set_serial_number(
        &BigNum::from_u32(1)
            .expect("bn")
            .to_asn1_integer()
            .expect("serial"),
    )
    .expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("t"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(30).expect("t"))
        .expect("na");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    b.build().to_pem().expect("pem")
}

#[test]
fn parameters_read_attributes_and_text_split_by_comments_or_cdata() {
    let mapping = r#"request = "{urn:t}Attr"
datasource = "db"
namespaces = { t = "urn:t", x = "urn:x" }

[params]
name = { path = "t:Item/@name" }
qty = { path = "t:Item/@x:min", type = "int" }
note = { path = "t:Note", required = false }

[query]
sql = "SELECT name FROM thing WHERE name = :name AND qty >= :qty AND (CAST(:note AS TEXT) IS NULL OR name = :note)"

[response]
element = "t:Attr"
fields = [ { column = "name", element = "t:Name" } ]
"#;
    for b in Backend::both(SETUP) {
        let kind = b.kind;
        let h = Harness::new(b, &[("attr.toml", mapping)]);
        let run = |p: &str| answer_text(h.outcome(p));
        assert_eq!(
            run(
                r#"<t:Attr xmlns:t="urn:t" xmlns:x="urn:x"><t:Item name="Beta" x:min="7"/></t:Attr>"#
            ),
            r#"<t:Attr xmlns:t="urn:t" xmlns:x="urn:x"><t:Name>Beta</t:Name></t:Attr>"#,
            "{kind:?}"
        );
        assert_eq!(
            run(
                r#"<t:Attr xmlns:t="urn:t" xmlns:x="urn:x"><t:Item name="Beta" x:min="1"/><t:Note>Be<!-- split -->t<![CDATA[a]]></t:Note></t:Attr>"#
            ),
            r#"<t:Attr xmlns:t="urn:t" xmlns:x="urn:x"><t:Name>Beta</t:Name></t:Attr>"#,
            "{kind:?}: the note is read whole"
        );
        // An attribute in no namespace is not the namespaced one.
        match h.run(r#"<t:Attr xmlns:t="urn:t"><t:Item name="Beta" min="7"/></t:Attr>"#) {
            Err(DryRunError::Invalid { errors, .. }) => {
                assert!(
                    errors[0].message.contains("t:Item/@x:min is missing"),
                    "{errors:?}"
                )
            }
            other => panic!("{kind:?}: {other:?}"),
        }
    }
}

#[test]
fn a_broken_sqlite_file_answers_failure_and_the_same_pool_recovers_when_it_is_restored() {
    let h = Harness::new(
        Backend::sqlite(SETUP),
        &[("find.toml", &typed_mapping("Find", "no_data"))],
    );
    let request = payload("Find", &with(&[]));
    assert!(matches!(h.outcome(&request), Outcome::Answer(_)));
    let path = h.backend.sqlite_path.clone();
    let good = std::fs::read(&path).expect("read db");
    // Overwritten in place (same inode, so the pooled connections see it): not a database any more.
    std::fs::write(&path, vec![0x5a; good.len()]).expect("break db");
    match h.outcome(&request) {
        Outcome::Failed(reason) => assert!(reason.contains("not a database"), "{reason}"),
        other => panic!("a broken database answered {other:?}"),
    }
    std::fs::write(&path, &good).expect("restore db");
    assert!(
        matches!(h.outcome(&request), Outcome::Answer(_)),
        "the same pool answers again once the file is back"
    );
}
