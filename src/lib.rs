//! smev-adapter: an agency's node in an SMEV 3-style interagency exchange.
//! The library holds every concern; the binary (`src/main.rs`) only calls [`cli::main`].

pub mod admin;
pub mod api;
pub mod cli;
pub mod config;
pub mod consumer;
pub mod datasource;
pub mod delivery;
pub mod diag;
pub mod doctor;
pub mod dsig;
pub mod exchange;
pub mod gateway;
pub mod mapping;
pub mod metrics;
pub mod node;
pub mod poll_guard;
pub mod provider;
pub mod revocation;
pub mod samples;
pub mod server;
pub mod soap;
pub mod storage;
pub mod tomlfile;
pub mod trust;
pub mod xml;
