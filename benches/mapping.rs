//! Exchanges/s of a single-row lookup (SendRequest XML → mapping → reply XML, no HTTP) on SQLite and
//! PostgreSQL next to the bare query loop in the same run; numbers only, it must not assert on timings.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use smev_adapter::config::Config;
use smev_adapter::node::Node;

type BoxError = Box<dyn Error + Send + Sync>;

/// The registration mapping's SQL, read from the shipped mapping so both loops run the same query.
fn registration_sql() -> Result<String, BoxError> {
    let text = std::fs::read_to_string("mappings/registration.toml")?;
    let table: toml::Table = text.parse()?;
    table
        .get("query")
        .and_then(|q| q.get("sql"))
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .ok_or_else(|| "mappings/registration.toml has no [query] sql".into())
}

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// Runs `work(thread, i)` on `threads` threads for `time`; returns operations per second.
fn measure(
    threads: usize,
    time: Duration,
    work: Arc<dyn Fn(usize, usize) -> bool + Send + Sync>,
) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, done, errors, work) =
                (stop.clone(), done.clone(), errors.clone(), work.clone());
            std::thread::spawn(move || {
                let mut i = t * 7919;
                while !stop.load(Ordering::Relaxed) {
                    if !work(t, i) {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(time);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / elapsed,
        errors.load(Ordering::Relaxed),
    )
}

/// The sample "other agency" key (samples/pki), which the bench node trusts.
fn sample_key() -> &'static smev_adapter::dsig::SigningKey {
    static KEY: std::sync::OnceLock<smev_adapter::dsig::SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let crypto = smev_adapter::dsig::Crypto::load();
        let (key, cert) = (
            std::path::Path::new("samples/pki/agency_b.key"),
            std::path::Path::new("samples/pki/agency_b.crt"),
        );
        smev_adapter::dsig::SigningKey::from_files(key, Some(cert), None, None, crypto)
            .expect("samples/pki/agency_b key")
    })
}

/// A signed SendRequest (the node verifies every request, as in production).
fn envelope(series: &str, number: &str) -> Vec<u8> {
    let unsigned = unsigned_envelope(series, number);
    let limits = smev_adapter::config::XmlLimits::default();
    let holder = (
        "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.3",
        "CallerInformationSystemSignature",
    );
    smev_adapter::dsig::sign_message(
        &unsigned,
        &limits,
        "SIGNED_BY_CONSUMER",
        holder,
        sample_key(),
    )
    .expect("sign the bench request")
    .into_bytes()
}

fn unsigned_envelope(series: &str, number: &str) -> String {
    let id = uuid::Uuid::now_v1(&[1, 2, 3, 4, 5, 6])
        .hyphenated()
        .to_string();
    format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns:SendRequestRequest xmlns:ns="urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.3" xmlns:basic="urn://x-artefacts-smev-gov-ru/services/message-exchange/types/basic/1.3"><ns:SenderProvidedRequestData Id="SIGNED_BY_CONSUMER"><ns:MessageID>{id}</ns:MessageID><basic:MessagePrimaryContent><r:RegistrationRequest xmlns:r="urn://example.gov/registration/1.0"><r:Series>{series}</r:Series><r:Number>{number}</r:Number></r:RegistrationRequest></basic:MessagePrimaryContent></ns:SenderProvidedRequestData><ns:CallerInformationSystemSignature/></ns:SendRequestRequest></soap:Body></soap:Envelope>"#
    )
}

fn node_for(dir: &std::path::Path, datasource: &str) -> Result<Node, BoxError> {
    let mappings = dir.join("mappings");
    std::fs::create_dir_all(&mappings)?;
    std::fs::copy(
        "mappings/registration.toml",
        mappings.join("registration.toml"),
    )?;
    let cwd = std::env::current_dir()?;
    let text = format!(
        "[node]\nmnemonic = \"BENCH\"\nreply = \"sync\"\n[server]\nplain_http = true\nwsdl_dir = \"{}/wsdl\"\n[storage]\ndata_dir = \"{}/data\"\n[keys]\nalgorithm = \"ecdsa-sha256\"\n[trust]\nca = [\"{}/samples/pki/ca.crt\"]\n[mappings]\ndir = \"{}\"\n{datasource}",
        cwd.display(),
        cwd.display(),
        dir.display(),
        mappings.display()
    );
    let path = dir.join("adapter.toml");
    std::fs::write(&path, &text)?;
    let config = Config::parse(&path, &text, &|_| None).map_err(|p| p.to_string())?;
    Ok(Node::start(config)?)
}

struct Line {
    backend: &'static str,
    threads: usize,
    bare: f64,
    exchange: f64,
    errors: u64,
}

fn print(lines: &[Line]) {
    println!();
    println!(
        "{:<9} {:>7} {:>14} {:>14} {:>12} {:>12}",
        "backend", "threads", "bare query/s", "exchange/s", "bare µs", "exchange µs"
    );
    for l in lines {
        println!(
            "{:<9} {:>7} {:>14.0} {:>14.0} {:>12.1} {:>12.1}{}",
            l.backend,
            l.threads,
            l.bare,
            l.exchange,
            1e6 * l.threads as f64 / l.bare,
            1e6 * l.threads as f64 / l.exchange,
            if l.errors > 0 {
                format!("  ({} WRONG ANSWERS)", l.errors)
            } else {
                String::new()
            }
        );
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(0) => ExitCode::SUCCESS,
        Ok(errors) => {
            eprintln!("{errors} wrong answers");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mapping bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<u64, BoxError> {
    let time = env_secs("BENCH_SECONDS", 3);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let sql = registration_sql()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("agency.db");
    smev_adapter::samples::build_database(std::path::Path::new("samples"), &db)?;
    let passports: Vec<(String, String)> = {
        let conn = rusqlite::Connection::open(&db)?;
        let mut stmt = conn.prepare(
            "SELECT pp.series, pp.number FROM passport pp JOIN registration r ON r.person_id = pp.person_id AND r.deregistered_on IS NULL ORDER BY pp.id LIMIT 1000",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    let passports = Arc::new(passports);
    let bodies: Arc<Vec<Vec<u8>>> =
        Arc::new(passports.iter().map(|(s, n)| envelope(s, n)).collect());
    println!(
        "mapping bench: RegistrationRequest by passport → registration mapping → SendResponseRequest XML \
         (provider::receive: verify, dedup check, mapping, signed answer; no HTTP, no durable write), {} passports, {}s per run, {cores} cores",
        passports.len(),
        time.as_secs()
    );
    let mut lines = Vec::new();
    let thread_counts: Vec<usize> = if cores > 1 { vec![1, cores] } else { vec![1] };

    // ---- SQLite ----
    let sqlite_node = Arc::new(node_for(
        &dir.path().join("sqlite"),
        &format!(
            "[datasources.agency]\nkind = \"sqlite\"\npath = \"{}\"\npool_size = {cores}\n",
            db.display()
        ),
    )?);
    for &threads in &thread_counts {
        let (db, sql, p) = (db.clone(), sql.clone(), passports.clone());
        let conns: Arc<Vec<std::sync::Mutex<rusqlite::Connection>>> = Arc::new(
            (0..threads)
                .map(|_| {
                    rusqlite::Connection::open_with_flags(
                        &db,
                        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                    )
                    .map(std::sync::Mutex::new)
                })
                .collect::<Result<_, _>>()?,
        );
        let (bare, e1) = measure(
            threads,
            time,
            Arc::new(move |t, i| {
                let (series, number) = &p[i % p.len()];
                let Ok(conn) = conns[t].lock() else {
                    return false;
                };
                let Ok(mut stmt) = conn.prepare_cached(&sql) else {
                    return false;
                };
                let row = stmt.query_row(
                    rusqlite::named_params! {":series": series, ":number": number},
                    |r| {
                        let mut v = Vec::with_capacity(6);
                        for c in 0..6 {
                            v.push(r.get::<_, Option<String>>(c)?);
                        }
                        Ok(v)
                    },
                );
                row.is_ok()
            }),
        );
        let (node, b) = (sqlite_node.clone(), bodies.clone());
        let (exchange, e2) = measure(
            threads,
            time,
            Arc::new(move |_, i| answered(&node, &b[i % b.len()])),
        );
        lines.push(Line {
            backend: "sqlite",
            threads,
            bare,
            exchange,
            errors: e1 + e2,
        });
        print(&lines[lines.len() - 1..]);
    }

    // ---- PostgreSQL ----
    let url = std::env::var("BENCH_PG_URL").or_else(|_| std::env::var("SMEV_TEST_PG_URL"));
    match url {
        Err(_) => println!("\npostgres: skipped (set BENCH_PG_URL or SMEV_TEST_PG_URL)"),
        Ok(url) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
            rt.block_on(copy_to_postgres(&url, &schema, &db))?;
            let sep = if url.contains('?') { '&' } else { '?' };
            let schema_url = format!("{url}{sep}options=-c%20search_path%3D{schema}");
            let result = (|| -> Result<(), BoxError> {
                let pg_node = Arc::new(node_for(
                    &dir.path().join("pg"),
                    &format!(
                        "[datasources.agency]\nkind = \"postgres\"\nurl = \"{schema_url}\"\npool_size = {}\n",
                        cores * 2
                    ),
                )?);
                let positional = smev_adapter::mapping::sql::to_positional(&sql);
                for &threads in &thread_counts {
                    let mut clients = Vec::new();
                    let mut statements = Vec::new();
                    for _ in 0..threads {
                        let (client, conn) = rt.block_on(tokio_postgres::connect(
                            &schema_url,
                            tokio_postgres::NoTls,
                        ))?;
                        rt.spawn(conn);
                        statements.push(rt.block_on(client.prepare(&positional.sql))?);
                        clients.push(client);
                    }
                    let clients = Arc::new(clients);
                    let statements = Arc::new(statements);
                    let handle = rt.handle().clone();
                    let p = passports.clone();
                    let (bare, e1) = measure(
                        threads,
                        time,
                        Arc::new(move |t, i| {
                            let (series, number) = &p[i % p.len()];
                            let client = &clients[t];
                            handle
                                .block_on(client.query_one(&statements[t], &[series, number]))
                                .map(|row| row.get::<_, Option<String>>(0).is_some())
                                .unwrap_or(false)
                        }),
                    );
                    let (node, b) = (pg_node.clone(), bodies.clone());
                    let (exchange, e2) = measure(
                        threads,
                        time,
                        Arc::new(move |_, i| answered(&node, &b[i % b.len()])),
                    );
                    lines.push(Line {
                        backend: "postgres",
                        threads,
                        bare,
                        exchange,
                        errors: e1 + e2,
                    });
                    print(&lines[lines.len() - 1..]);
                }
                Ok(())
            })();
            let drop_schema = rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
            });
            result?;
            drop_schema?;
            rt.shutdown_background();
        }
    }
    print(&lines);
    Ok(lines.iter().map(|l| l.errors).sum())
}

/// One exchange through the node's real decision path (verify, dedup check, mapping, signed answer);
/// the durable write is the throughput bench's subject, not this one's.
fn answered(node: &Node, body: &[u8]) -> bool {
    use smev_adapter::provider::{Next, Step, receive};
    match receive(node, body).1 {
        Step::Store { reply, .. } => contains(&reply, b"<r:LastName>"),
        Step::Then(Next::Reply(r)) => r.status == 200 && contains(&r.body, b"<r:LastName>"),
        _ => false,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Creates the sample tables in `schema` and copies the sample rows the registration mapping reads.
async fn copy_to_postgres(url: &str, schema: &str, db: &std::path::Path) -> Result<(), BoxError> {
    let (mut client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let ddl = std::fs::read_to_string("samples/schema.sql")?;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema}; {ddl}"
        ))
        .await?;
    let sqlite = rusqlite::Connection::open(db)?;
    let tx = client.transaction().await?;
    for (table, columns) in [
        (
            "person",
            "id, last_name, first_name, middle_name, birth_date, sex, snils",
        ),
        (
            "passport",
            "id, person_id, series, number, issued_on, issued_by",
        ),
        (
            "address",
            "id, postal_code, region, city, street, house, flat",
        ),
        (
            "registration",
            "id, person_id, address_id, registered_on, deregistered_on",
        ),
    ] {
        let n = columns.split(',').count();
        let mut stmt = sqlite.prepare(&format!("SELECT {columns} FROM {table}"))?;
        let rows: Vec<Vec<Option<String>>> = stmt
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        r.get_ref(i).map(|v| match v {
                            rusqlite::types::ValueRef::Null => None,
                            rusqlite::types::ValueRef::Integer(x) => Some(x.to_string()),
                            rusqlite::types::ValueRef::Real(x) => Some(x.to_string()),
                            rusqlite::types::ValueRef::Text(t)
                            | rusqlite::types::ValueRef::Blob(t) => {
                                Some(String::from_utf8_lossy(t).into_owned())
                            }
                        })
                    })
                    .collect()
            })?
            .collect::<Result<_, _>>()?;
        let placeholders: Vec<String> = (1..=n).map(|i| format!("${i}::text")).collect();
        let casts = columns
            .split(',')
            .map(str::trim)
            .zip(&placeholders)
            .map(|(c, p)| {
                if c.ends_with("id") {
                    format!("{p}::integer")
                } else {
                    p.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let insert = tx
            .prepare(&format!("INSERT INTO {table} ({columns}) VALUES ({casts})"))
            .await?;
        for row in &rows {
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = row
                .iter()
                .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            tx.execute(&insert, &params).await?;
        }
    }
    tx.commit().await?;
    client.batch_execute("ANALYZE").await?;
    Ok(())
}
