//! The command line: subcommands, their help, and turning library errors into exit codes and messages.
//! This is the only place `anyhow` is used; the logic each command runs lives in the library modules.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::{Config, ENV_DATA_DIR, ENV_LISTEN};
use crate::datasource::Datasources;
use crate::diag::Problem;
use crate::mapping::MappingSet;
use crate::node::{self, Node};

/// smev-adapter: your agency's node in an SMEV 3-style interagency exchange.
///
/// It answers signed SOAP requests from the upstream gateway with data from your own database,
/// through SQL mappings you write in mappings/*.toml.
#[derive(Parser, Debug)]
#[command(name = "smev-adapter", version, propagate_version = true)]
pub struct Cli {
    /// Config file. Default: ./adapter.toml, then /etc/smev-adapter/adapter.toml.
    #[arg(long, short = 'c', global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the node: serve SOAP on the configured listen address (default 127.0.0.1:7575, path /ws).
    ///
    /// On first start it creates data_dir and builds the sample database if a datasource names
    /// `create_from_samples` and its file is missing. Stops cleanly on SIGTERM or Ctrl-C.
    #[command(
        after_help = "Environment: SMEV_ADAPTER_LISTEN overrides server.listen, SMEV_ADAPTER_DATA_DIR overrides storage.data_dir."
    )]
    Serve {
        /// Listen address, overriding the config and SMEV_ADAPTER_LISTEN (e.g. 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Check the config and every mapping without serving; print each problem as file:line: cause.
    ///
    /// Exits 0 when everything is valid, 1 otherwise. Opens the datasources to prepare each mapping's SQL.
    Check,
    /// Check the installation: config, keys, GOST, datasources, free disk, gateway; one OK/WARN/FAIL line each.
    ///
    /// Exits 1 when any check FAILs. Changes nothing (except that, like `check`, it builds a missing sample database).
    Doctor,
    /// Print the version.
    Version,
    /// Tools for the bundled sample agency.
    #[command(subcommand)]
    Samples(SamplesCommand),
    /// Inspect and act on the node's message store (safe while the node runs).
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Send a request to another agency through the running node's outbox; prints its MessageID.
    ///
    /// The payload is one XML element in its own namespace (the business request). The node wraps it in
    /// SendRequest, queues it, delivers it to the gateway with retries, and stores the answer when it comes.
    Send {
        /// The payload XML file.
        #[arg(value_name = "PAYLOAD.xml")]
        payload: PathBuf,
        /// Recipient mnemonic(s), comma-separated. Without it the gateway routes by the payload's type.
        #[arg(long, value_name = "MNEMONIC")]
        to: Option<String>,
        #[arg(long, value_name = "CODE")]
        transaction_code: Option<String>,
        /// Wait for the answer and print it.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "60s", value_name = "DURATION")]
        timeout: String,
    },
    /// Development PKI: `pki init DIR` creates a test CA, this node's certificate and other agencies'.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Sign the element with `Id` = ID the SMEV way (exc-c14n + SMEV transform) and print the document.
    ///
    /// The signature goes into the empty `...Signature` holder after the element (e.g.
    /// CallerInformationSystemSignature), or inside the element (enveloped) when there is none.
    Sign {
        #[arg(value_name = "IN.xml")]
        file: PathBuf,
        /// Private key (PEM, DER, PKCS#8 or PKCS#12).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Certificate (PEM or DER); optional with PKCS#12.
        #[arg(long, value_name = "FILE")]
        cert: Option<PathBuf>,
        /// Signature algorithm URI; default: the key's own (ECDSA-SHA256, RSA-SHA256, GOST 2012).
        #[arg(long, value_name = "URI")]
        alg: Option<String>,
        /// The Id of the element to sign.
        #[arg(long, default_value = "SIGNED_BY_CONSUMER")]
        id: String,
        /// Environment variable holding the key's password (PKCS#12, encrypted PKCS#8).
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
    },
    /// Verify every ds:Signature in a document: which element, by whom, which algorithms, OK or why not.
    ///
    /// Exit code 0 only when there is at least one signature and all are valid.
    Verify {
        #[arg(value_name = "IN.xml")]
        file: PathBuf,
        /// Trust anchor: a CA certificate or a self-signed certificate (PEM or DER).
        #[arg(long, value_name = "CERT.pem")]
        trusted: Option<PathBuf>,
    },
    /// Development keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The tamper-evident audit journal: verify its hash chain, export it.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Tools for mapping files: a dry run of a request through a mapping.
    #[command(subcommand)]
    Mapping(MappingCommand),
    /// Run the gateway SIMULATOR (a test and demo tool): --config names gateway.toml (default ./gateway.toml).
    Gateway {
        /// Only validate gateway.toml, printing each problem as file:line: cause.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Write DIR/key.pem (owner-only) and a self-signed DIR/cert.pem, valid for a year. Development only.
    Generate {
        /// gost2012-256, gost2012-512, rsa or ecdsa.
        #[arg(long, default_value = "ecdsa")]
        alg: String,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum PkiCommand {
    /// Create DIR/ca.crt, DIR/<node>.key/.crt and a key and certificate per other agency (ECDSA P-256,
    /// CN = mnemonic). Development and tests only.
    Init {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// This node's mnemonic.
        #[arg(long, default_value = "SAMPLE_AGENCY")]
        node: String,
        /// Other agencies' mnemonics, comma-separated.
        #[arg(long, default_value = "AGENCY_B,AGENCY_C")]
        agencies: String,
    },
    /// Revoke parties of a `pki init` folder: adds their certificates to DIR/ca.crl (created when
    /// missing, earlier entries kept; valid 30 days), for `trust.crl`. Development and tests only.
    Revoke {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Mnemonics whose certificates (DIR/<mnemonic>.crt) are revoked.
        #[arg(value_name = "MNEMONIC", required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the whole hash chain; names the first edited, deleted or reordered entry. Exit 1 if broken.
    Verify,
    /// Write entries as JSON lines (to stdout, or --out FILE).
    Export {
        /// From this time (inclusive): 2026-12-01 or 2026-12-01T08:00:00Z. Default: the beginning.
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Until this time (exclusive). Default: now.
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// List messages, newest first.
    List {
        /// Only this status (RECEIVED, PROCESSING, RESPONSE_READY, DELIVERED, REJECTED, WAITING_FOR_RETRY, FAILED, ...).
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// Only messages past their mapping's deadline that are not finished.
        #[arg(long)]
        overdue: bool,
        /// At most this many lines.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one message (by row id or MessageID): its status history and every delivery attempt.
    Show {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Put FAILED messages back in line for delivery: one by row id or MessageID, or all with --failed.
    Retry {
        #[arg(
            value_name = "ID",
            required_unless_present = "failed",
            conflicts_with = "failed"
        )]
        id: Option<String>,
        /// Retry every FAILED message.
        #[arg(long)]
        failed: bool,
    },
    /// Delete finished messages (DELIVERED, REJECTED, CLOSED, FAILED) last changed before a cutoff.
    Purge {
        /// Age, e.g. 30d, 12h.
        #[arg(long, value_name = "AGE")]
        older_than: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum MappingCommand {
    /// Dry run: extract the parameters from REQUEST, run the SQL, print the rows and the XML produced.
    ///
    /// REQUEST is a SendRequest SOAP envelope or just the payload element. The mapping is the one
    /// the payload's QName selects, or the one named with --mapping (the file name without .toml).
    /// A mapping that writes runs in a transaction that is rolled back. Exit 0 when the request is
    /// answered (with data or NO_DATA), 1 otherwise.
    Test {
        /// The request file.
        #[arg(value_name = "REQUEST.xml")]
        request: PathBuf,
        /// Use this mapping instead of routing by the payload's QName.
        #[arg(long, value_name = "NAME")]
        mapping: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SamplesCommand {
    /// (Re)build the sample agency's SQLite database from a samples folder.
    BuildDb {
        /// The samples folder holding schema.sql, fixed.sql and names/.
        #[arg(long, default_value = "samples", value_name = "DIR")]
        samples: PathBuf,
        /// Where to write the database; an existing file is replaced.
        #[arg(long, default_value = "data/sample-agency.db", value_name = "FILE")]
        out: PathBuf,
    },
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Human-readable logs on a terminal, JSON lines otherwise (journald, files); `SMEV_ADAPTER_LOG_FORMAT=json|text`
/// overrides the choice and `RUST_LOG` the level.
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match std::env::var("SMEV_ADAPTER_LOG_FORMAT").ok().as_deref() {
        Some("json") => true,
        Some("text") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("smev-adapter {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => Ok(check(cli.config.as_deref())),
        Command::Doctor => Ok(crate::doctor::main(cli.config.as_deref())),
        Command::Gateway { check } => {
            Ok(match crate::gateway::run(cli.config.as_deref(), check)? {
                true => ExitCode::SUCCESS,
                false => ExitCode::FAILURE,
            })
        }
        Command::Serve { listen } => serve(cli.config.as_deref(), listen),
        Command::Queue(cmd) => queue(cli.config.as_deref(), cmd),
        Command::Audit(cmd) => audit(cli.config.as_deref(), cmd),
        Command::Pki(PkiCommand::Init {
            dir,
            node,
            agencies,
        }) => {
            let others: Vec<&str> = agencies
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .collect();
            let pki = crate::trust::pki_init(&dir, &node, &others)?;
            println!("CA certificate (put it in trust.ca): {}", pki.ca.display());
            for (name, key, cert) in &pki.parties {
                println!(
                    "{name}: key {} certificate {}",
                    key.display(),
                    cert.display()
                );
            }
            println!("Development only: these keys are not protected by any hardware or password.");
            Ok(ExitCode::SUCCESS)
        }
        Command::Pki(PkiCommand::Revoke { dir, names }) => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let crl = crate::revocation::pki_revoke(&dir, &names)?;
            println!(
                "revoked {}: CRL {} (put it in trust.crl)",
                names.join(", "),
                crl.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign {
            file,
            key,
            cert,
            alg,
            id,
            password_env,
        } => {
            let crypto = crate::dsig::Crypto::load();
            let alg = alg
                .as_deref()
                .map(crate::dsig::SignatureAlg::from_uri)
                .transpose()?;
            let password = match password_env {
                Some(var) => Some(
                    std::env::var(&var)
                        .with_context(|| format!("environment variable {var} is not set"))?,
                ),
                None => None,
            };
            let key = crate::dsig::SigningKey::from_files(
                &key,
                cert.as_deref(),
                password.as_deref(),
                alg,
                crypto,
            )?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            print!("{}", crate::dsig::tools::sign_document(&text, &id, &key)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { file, trusted } => {
            let crypto = crate::dsig::Crypto::load();
            let store = match trusted {
                Some(path) => Some(crate::dsig::TrustStore::from_files(&[path], crypto)?),
                None => None,
            };
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let reports = crate::dsig::tools::verify_document(&text, store.as_ref(), crypto)?;
            if reports.is_empty() {
                println!("FAILED: no ds:Signature in {}", file.display());
                return Ok(ExitCode::FAILURE);
            }
            for r in &reports {
                println!("{r}");
            }
            Ok(if reports.iter().all(|r| r.is_valid()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Keys(KeysCommand::Generate { alg, out }) => {
            let crypto = crate::dsig::Crypto::load();
            let which = crate::dsig::tools::DevKeyAlg::parse(&alg).with_context(|| {
                format!("--alg `{alg}`: use gost2012-256, gost2012-512, rsa or ecdsa")
            })?;
            let (key, cert) = crate::dsig::tools::generate_dev_keys(which, &out, &crypto)?;
            println!(
                "key {} (owner-only), certificate {} (self-signed, one year; development only)",
                key.display(),
                cert.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Send {
            payload,
            to,
            transaction_code,
            wait,
            timeout,
        } => send(
            cli.config.as_deref(),
            &payload,
            to.as_deref(),
            transaction_code.as_deref(),
            wait.then_some(timeout),
        ),
        Command::Samples(SamplesCommand::BuildDb { samples, out }) => {
            let _ = std::fs::remove_file(&out);
            crate::samples::build_database(&samples, &out)
                .with_context(|| format!("building {}", out.display()))?;
            println!("built {} from {}", out.display(), samples.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Mapping(MappingCommand::Test { request, mapping }) => {
            mapping_test(cli.config.as_deref(), &request, mapping.as_deref())
        }
    }
}

// ---- `mapping test` ---------------------------------------------------------------------------

/// `mapping test`: the dry run, printed step by step.
fn mapping_test(
    explicit: Option<&Path>,
    request: &Path,
    mapping: Option<&str>,
) -> Result<ExitCode> {
    use crate::mapping::{DryRunError, Outcome};
    let config = match load_config(explicit) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            anyhow::bail!("the configuration is invalid; `smev-adapter check` lists the problems");
        }
    };
    let text = std::fs::read_to_string(request)
        .with_context(|| format!("reading {}", request.display()))?;
    node::build_missing_sample_databases(&config)?;
    let datasources = Datasources::open(&config.datasources)?;
    let set = match MappingSet::load(&config.mappings_dir, &datasources) {
        Ok(s) => s,
        Err(problems) => {
            println!("{problems}");
            anyhow::bail!("the mappings are invalid; fix them first (`smev-adapter check`)");
        }
    };
    let run = match crate::mapping::dry_run(&set, &datasources, &text, mapping, &config.limits.xml)
    {
        Ok(r) => r,
        Err(e @ DryRunError::Invalid { .. }) => {
            println!("{e}");
            println!("answer: InvalidContent fault");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => anyhow::bail!("{e}"),
    };
    println!("mapping: {} ({})", run.mapping, run.file.display());
    if let Some(m) = set.by_name(&run.mapping) {
        let senders = match &m.allowed_senders {
            crate::mapping::Senders::Any => "any".to_string(),
            crate::mapping::Senders::Only(list) => list.join(", "),
        };
        let deadline = m
            .deadline
            .map_or_else(|| "none".to_string(), |d| format!("{d:?}"));
        println!("allowed senders: {senders}; deadline: {deadline}");
    }
    println!("parameters:");
    for (name, value) in &run.params {
        println!("  :{name} = {value}");
    }
    println!("SQL:");
    for line in run.sql.trim().lines() {
        println!("  {line}");
    }
    if let Some(rows) = &run.rows {
        println!("rows: {}", rows.rows.len());
        println!("  {}", rows.columns.join(" | "));
        for row in &rows.rows {
            let cells: Vec<&str> = row.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
            println!("  {}", cells.join(" | "));
        }
    }
    match run.outcome {
        Outcome::Answer(xml) => {
            println!("response:");
            println!("{}", String::from_utf8_lossy(&xml));
            Ok(ExitCode::SUCCESS)
        }
        Outcome::NoData => {
            println!("answer: RequestRejected NO_DATA");
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Failed(reason) => {
            println!("answer: RequestRejected FAILURE");
            println!("reason: {reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn open_store(explicit: Option<&Path>) -> Result<crate::storage::Store> {
    let config = match load_config(explicit) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            anyhow::bail!("the configuration is invalid; `smev-adapter check` lists the problems");
        }
    };
    let options = crate::storage::StoreOptions {
        durability: config.storage.durability,
        ..Default::default()
    };
    let path = config.data_dir.join(crate::storage::STORE_FILE);
    anyhow::ensure!(
        path.exists(),
        "no store at {} (has the node run with this config?)",
        path.display()
    );
    crate::storage::Store::open(&config.data_dir, &options).map_err(anyhow::Error::from)
}

fn queue(explicit: Option<&Path>, cmd: QueueCommand) -> Result<ExitCode> {
    use crate::storage::{Status, now_millis, rfc3339};
    let store = open_store(explicit)?;
    match cmd {
        QueueCommand::List {
            status,
            overdue,
            limit,
        } => {
            let status = match status {
                Some(s) => {
                    Some(Status::parse(&s).with_context(|| format!("unknown status `{s}`"))?)
                }
                None => None,
            };
            let now = now_millis();
            println!(
                "{:>6}  {:<36}  {:<17}  {:<14}  {:>3}  {:<24}  NOTE",
                "ID", "MESSAGE ID", "STATUS", "MAPPING", "TRY", "UPDATED"
            );
            for m in store.list(status, overdue, limit)? {
                let note = if m.overdue(now) {
                    "OVERDUE".to_string()
                } else {
                    m.last_error.clone().unwrap_or_default()
                };
                println!(
                    "{:>6}  {:<36}  {:<17}  {:<14}  {:>3}  {:<24}  {}",
                    m.id,
                    m.message_id,
                    m.status,
                    m.mapping.as_deref().unwrap_or("-"),
                    m.attempts,
                    rfc3339(m.updated_at),
                    note
                );
            }
        }
        QueueCommand::Show { id } => {
            let Some(d) = store.show(&id)? else {
                println!("no message with row id or MessageID `{id}`");
                return Ok(ExitCode::FAILURE);
            };
            let m = &d.summary;
            println!(
                "message {} ({}), {} from {}",
                m.message_id, m.direction, m.status, m.sender
            );
            println!("  row id        {}", m.id);
            println!("  mapping       {}", m.mapping.as_deref().unwrap_or("-"));
            println!("  created       {}", rfc3339(m.created_at));
            if let Some(deadline) = m.deadline_at {
                println!(
                    "  deadline      {}{}",
                    rfc3339(deadline),
                    if m.overdue(now_millis()) {
                        "  OVERDUE"
                    } else {
                        ""
                    }
                );
            }
            println!(
                "  response id   {}",
                d.response_message_id.as_deref().unwrap_or("-")
            );
            println!("history:");
            for (at, status, detail) in &d.history {
                println!(
                    "  {}  {:<17}  {}",
                    rfc3339(*at),
                    status,
                    detail.as_deref().unwrap_or("")
                );
            }
            println!("delivery attempts: {}", d.attempts.len());
            for (at, ok, http, error) in &d.attempts {
                let http = http.map_or("-".to_string(), |h| h.to_string());
                println!(
                    "  {}  {}  HTTP {}  {}",
                    rfc3339(*at),
                    if *ok { "ok    " } else { "failed" },
                    http,
                    error.as_deref().unwrap_or("")
                );
            }
        }
        QueueCommand::Retry { id, failed } => {
            let n = store.retry_blocking(if failed { None } else { id })?;
            println!(
                "{n} message{} put back in line for delivery",
                if n == 1 { "" } else { "s" }
            );
        }
        QueueCommand::Purge { older_than } => {
            let age = crate::config::parse_duration(&older_than)
                .with_context(|| format!("`{older_than}` is not an age like 30d or 12h"))?;
            let n = store.purge_blocking(now_millis() - age.as_millis() as i64)?;
            println!(
                "{n} finished message{} older than {older_than} deleted",
                if n == 1 { "" } else { "s" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn send(
    explicit: Option<&Path>,
    payload: &Path,
    to: Option<&str>,
    code: Option<&str>,
    wait: Option<String>,
) -> Result<ExitCode> {
    use crate::storage::outbox::Channel;
    let config = Config::load(&Config::locate(explicit).map_err(|p| anyhow::anyhow!("{p}"))?)
        .map_err(|p| anyhow::anyhow!("{p}"))?;
    let timeout = match &wait {
        Some(t) => Some(
            crate::config::parse_duration(t)
                .with_context(|| format!("`{t}` is not a duration like 60s"))?,
        ),
        None => None,
    };
    let text = std::fs::read_to_string(payload)
        .with_context(|| format!("cannot read {}", payload.display()))?;
    let recipients: Vec<String> = to
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    let random_node = *uuid::Uuid::new_v4().as_bytes();
    let mut node_id = [0u8; 6];
    node_id.copy_from_slice(&random_node[..6]);
    node_id[0] |= 1;
    let trust = crate::trust::Trust::load(&config)?;
    let built = crate::consumer::build_request(
        &config,
        crate::soap::MessageId::generate(&node_id),
        &text,
        &recipients,
        code,
    )
    .and_then(|b| crate::consumer::sign(&config, &trust.key, b))
    .with_context(|| format!("{} cannot be sent", payload.display()))?;
    let message_id = built.message_id.to_string();
    let record = crate::consumer::outgoing(&config, built, &recipients, Channel::Cli, None, None);
    let store = open_store(explicit)?;
    store.queue_outgoing_blocking(record)?;
    println!("{message_id}");
    let Some(timeout) = timeout else {
        return Ok(ExitCode::SUCCESS);
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let view = store
            .outgoing(&message_id)?
            .context("the queued request disappeared")?;
        match view.status.as_str() {
            "ANSWERED" | "REJECTED" | "CLOSED" => {
                for a in &view.answers {
                    println!("{}", crate::consumer::answer_payload(&a.body));
                }
                return Ok(if view.status == "REJECTED" {
                    ExitCode::from(3)
                } else {
                    ExitCode::SUCCESS
                });
            }
            "FAILED" => {
                let last = view
                    .history
                    .last()
                    .and_then(|h| h.2.clone())
                    .unwrap_or_default();
                anyhow::bail!("the request could not be delivered: {last}");
            }
            _ if std::time::Instant::now() > deadline => {
                anyhow::bail!(
                    "no answer within {wait:?} (status {}); it is still queued: `smev-adapter queue show {message_id}`",
                    view.status
                )
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
}

fn audit(explicit: Option<&Path>, cmd: AuditCommand) -> Result<ExitCode> {
    let store = open_store(explicit)?;
    match cmd {
        AuditCommand::Verify => {
            let v = store.audit_verify()?;
            match v.first_bad {
                None => {
                    println!(
                        "OK: {} audit entries, hash chain intact; last hash {}",
                        v.entries, v.last_hash
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some((seq, reason)) => {
                    println!("BROKEN: audit entry {seq}: {reason}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AuditCommand::Export { from, to, out } => {
            let from = from.as_deref().map(parse_time).transpose()?.unwrap_or(0);
            let to = to
                .as_deref()
                .map(parse_time)
                .transpose()?
                .unwrap_or(i64::MAX);
            let n = match out {
                Some(path) => {
                    let mut file = std::io::BufWriter::new(
                        std::fs::File::create(&path)
                            .with_context(|| format!("cannot create {}", path.display()))?,
                    );
                    let n = store.audit_export(from, to, &mut file)?;
                    std::io::Write::flush(&mut file)?;
                    n
                }
                None => store.audit_export(from, to, &mut std::io::stdout().lock())?,
            };
            eprintln!("{n} audit entries exported");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `2026-12-01` or an RFC 3339 time → ms since the epoch.
fn parse_time(text: &str) -> Result<i64> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    let t = humantime::parse_rfc3339_weak(full.trim_end_matches('Z')).with_context(|| {
        format!("`{text}` is not a time like 2026-12-01 or 2026-12-01T08:00:00Z")
    })?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64))
}

fn load_config(explicit: Option<&Path>) -> Result<Config, Vec<Problem>> {
    let path = Config::locate(explicit).map_err(|p| p.0)?;
    Config::load(&path).map_err(|p| p.0)
}

/// `check`: every problem in the config and the mappings, one per line.
pub fn check(explicit: Option<&Path>) -> ExitCode {
    let problems = collect_problems(explicit);
    if problems.is_empty() {
        println!("OK: configuration and mappings are valid");
        return ExitCode::SUCCESS;
    }
    for p in &problems {
        println!("{p}");
    }
    println!(
        "{} problem{} found",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    ExitCode::FAILURE
}

fn collect_problems(explicit: Option<&Path>) -> Vec<Problem> {
    let path = match Config::locate(explicit) {
        Ok(p) => p,
        Err(p) => return p.0,
    };
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(problems) => {
            // Still check the mappings of a broken config when its mappings dir can be found.
            let mut all = problems.0;
            all.extend(mappings_of_broken_config(&path));
            return all;
        }
    };
    if let Err(e) = node::build_missing_sample_databases(&config) {
        return vec![Problem::whole_file(&config.source, e.to_string())];
    }
    let datasources = match Datasources::open(&config.datasources) {
        Ok(d) => d,
        Err(e) => return vec![Problem::whole_file(&config.source, e.to_string())],
    };
    match MappingSet::load(&config.mappings_dir, &datasources) {
        Ok(_) => Vec::new(),
        Err(p) => p.0,
    }
}

/// With an invalid config, mappings are still checked on their own (without datasource checks).
fn mappings_of_broken_config(config_path: &Path) -> Vec<Problem> {
    let Ok(text) = std::fs::read_to_string(config_path) else {
        return Vec::new();
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let base = config_path.parent().unwrap_or(Path::new(""));
    let dir = table
        .get("mappings")
        .and_then(|m| m.get("dir"))
        .and_then(|d| d.as_str())
        .unwrap_or("mappings");
    let dir = base.join(dir);
    if !dir.is_dir() {
        return Vec::new();
    }
    let names: Vec<String> = table
        .get("datasources")
        .and_then(|d| d.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    crate::mapping::load_dir(&dir, &names).1
}

fn serve(explicit: Option<&Path>, listen: Option<std::net::SocketAddr>) -> Result<ExitCode> {
    let mut config = match load_config(explicit) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            anyhow::bail!(
                "the configuration is invalid ({} problems); `smev-adapter check` lists them too",
                problems.len()
            );
        }
    };
    if let Some(addr) = listen {
        config.listen = addr;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // The reactor threads only move bytes (HTTP is ~1% of a request's instructions); parsing, signatures and
    // SQL run on the CPU pool (one thread per core). Half the cores for I/O keeps threads from outnumbering
    // cores: on 2 cores, 1 I/O thread measured the same req/s as 2 within the noise and 1-2 MiB less RSS
    // (benches/peers-load.sh, alternated runs).
    let io_threads = (cores / 2).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads)
        .max_blocking_threads(cores * 4)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listen = config.listen;
        let node = tokio::task::spawn_blocking(move || Node::start(config)).await.context("starting the node")??;
        let node = Arc::new(node);
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen} (set server.listen, {ENV_LISTEN} or --listen)"))?;
        tracing::info!(
            "smev-adapter {} serving {} mappings at http://{}{} (data_dir {}; {ENV_DATA_DIR} overrides it)",
            env!("CARGO_PKG_VERSION"),
            node.mappings().len(),
            listener.local_addr()?,
            node.config.endpoint_path,
            node.config.data_dir.display()
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        match node.config.admin.clone() {
            Some(admin) => {
                let admin_listener = tokio::net::TcpListener::bind(admin.listen)
                    .await
                    .with_context(|| format!("cannot listen on {} for the status page (admin.listen)", admin.listen))?;
                tracing::info!("status page at http://{}/login?token=<admin token>", admin_listener.local_addr()?);
                let mut stopped = stopped.clone();
                tokio::spawn(crate::admin::serve(node.clone(), admin_listener, admin.token, async move {
                    let _ = stopped.changed().await;
                }));
            }
            None => tracing::info!("status page off: set admin.token_file (or admin.token) to enable it"),
        }
        crate::server::serve(node, listener, async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        })
        .await?;
        drop(stopped);
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
