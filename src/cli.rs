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
    /// Print the version.
    Version,
    /// Tools for the bundled sample agency.
    #[command(subcommand)]
    Samples(SamplesCommand),
    /// Tools for mapping files: a dry run of a request through a mapping.
    #[command(subcommand)]
    Mapping(MappingCommand),
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

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("smev-adapter {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => Ok(check(cli.config.as_deref())),
        Command::Serve { listen } => serve(cli.config.as_deref(), listen),
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
        println!(
            "allowed senders: {senders} (enforced once signatures are verified); deadline: {deadline}"
        );
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
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
        crate::server::serve(node, listener, shutdown_signal()).await?;
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
