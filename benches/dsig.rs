//! Criterion benchmarks of the XML signature path (issue 3): exclusive c14n of a 2 KB and a 1 MB document next to libxml2's in the same run, and XMLDSig sign/verify of a 2 KB SMEV SendRequest per algorithm next to raw OpenSSL over the same bytes.
//! It reports numbers and ratios only: no pass/fail thresholds on timings; it fails only when a signature does not verify or the outputs disagree with libxml2's.
//!
//! What is compared with what:
//! - `xml-sign`: `dsig::sign_message` on the unsigned request text, as the node signs what it sends: parse,
//!   Id resolution, exc-c14n + SMEV transform straight into the reference digest, SignedInfo, the
//!   signature, KeyInfo, splicing the ds:Signature into the text.
//! - `xml-verify`: parsing the signed request and `dsig::verify_message`: SignedInfo checks, Id
//!   resolution, the reference digest, SignedInfo c14n, the (cached) trust decision, the signature.
//!   `xml-verify-parsed` is the same on an already parsed document (the node parses each request once,
//!   for routing as well as for the signature).
//! - `raw-sign` / `raw-verify`: the cryptography that XMLDSig cannot avoid, on exactly the bytes the
//!   XML path feeds to OpenSSL: the reference digest over the SMEV-transformed signed element, then
//!   the signature (or its check) over the canonical SignedInfo. The XML work is the rest.
//!   Ratio = (xml-sign + xml-verify) / (raw-sign + raw-verify); the target is < 1.30 for ECDSA and GOST.
//!   The summary also gives the ratio with xml-verify-parsed, the cost the node actually adds on the
//!   receiving side (it parses a request once, for routing as well as for the signature); the two
//!   roxmltree parses alone are about 0.3 of the raw ECDSA figure.
//!
//! Times are CPU time of the benchmarking thread (criterion with a custom measurement): the machine
//! is shared with other builds, and their load must not count. Everything measured is single-threaded.
//!
//! Run: `cargo bench --bench dsig` (about 2 minutes); `-- --quick` for a faster, rougher run; a
//! filter such as `-- ecdsa` runs one group. A table of medians and ratios is printed at the end
//! (from criterion's estimates of this run).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use openssl::hash::{MessageDigest, hash};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private, Public};
use openssl::sign::{Signer, Verifier};
use smev_adapter::config::XmlLimits;
use smev_adapter::dsig::{
    Crypto, DSIG_NS, DigestAlg, SignOptions, SignatureAlg, SigningKey, TrustStore,
    load_private_key, sign_message, verify_message,
};
use smev_adapter::xml::{self, c14n, smev_transform};

const TYPES: &str = "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.3";
const TARGET_ID: &str = "SIGNED_BY_CONSUMER";
const HOLDER: (&str, &str) = (TYPES, "CallerInformationSystemSignature");

type BoxError = Box<dyn std::error::Error>;

fn keys() -> PathBuf {
    let rel = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/xmldsig/keys");
    if rel.is_dir() {
        rel
    } else {
        PathBuf::from("/work/shared/vectors/xmldsig/keys")
    }
}

/// A SendRequest of about 2 KB with an empty signature holder.
fn request() -> String {
    let mut fields = String::new();
    for i in 0..12 {
        fields.push_str(&format!(
            "\n        <r:Field name=\"f{i}\" kind=\"string\">Значение поля номер {i} &amp; ещё</r:Field>"
        ));
    }
    format!(
        r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><ns1:SendRequestRequest xmlns:ns1="{TYPES}">
  <ns1:SenderProvidedRequestData Id="{TARGET_ID}">
    <ns1:MessageID>db0486d0-3c08-11e5-95e2-d4c9eff07b77</ns1:MessageID>
    <MessagePrimaryContent xmlns="urn://x-artefacts-smev-gov-ru/services/message-exchange/types/basic/1.3">
      <r:RegistrationRequest xmlns:r="urn://example.gov/registration/1.0">
        <r:Passport><r:Series>4509</r:Series><r:Number>123456</r:Number></r:Passport>{fields}
      </r:RegistrationRequest>
    </MessagePrimaryContent>
  </ns1:SenderProvidedRequestData>
  <ns1:CallerInformationSystemSignature/>
</ns1:SendRequestRequest></S:Body></S:Envelope>"#
    )
}

/// A ~1 MB document of the same shape (many records, each declaring an unused namespace).
fn big_document() -> String {
    let mut body = String::with_capacity(1 << 20);
    let mut i = 0;
    while body.len() < 1_000_000 {
        body.push_str(&format!(
            "<r:Row n=\"{i}\" xmlns:x=\"urn://unused/{i}\"><r:LastName>Иванов-{i}</r:LastName><r:FirstName>Анна</r:FirstName><r:Address kind=\"reg\">г. Тверь, ул. Советская, д. {i} &amp; кв. 7</r:Address></r:Row>\n"
        ));
        i += 1;
    }
    format!(
        "<S:Envelope xmlns:S=\"http://schemas.xmlsoap.org/soap/envelope/\"><S:Body><r:Rows xmlns:r=\"urn://example.gov/registration/1.0\">\n{body}</r:Rows></S:Body></S:Envelope>"
    )
}

// libxml2's canonicalization, for comparison in the same run (the system library the `libxml`
// crate links; called directly so that no copy into a Rust string is counted against it).
#[link(name = "xml2")]
unsafe extern "C" {
    fn xmlReadMemory(
        buffer: *const std::ffi::c_char,
        size: i32,
        url: *const std::ffi::c_char,
        encoding: *const std::ffi::c_char,
        options: i32,
    ) -> *mut std::ffi::c_void;
    fn xmlFreeDoc(doc: *mut std::ffi::c_void);
    fn xmlC14NDocDumpMemory(
        doc: *mut std::ffi::c_void,
        nodes: *mut std::ffi::c_void,
        mode: i32,
        inclusive_ns_prefixes: *mut *mut u8,
        with_comments: i32,
        out: *mut *mut u8,
    ) -> i32;
    fn free(p: *mut std::ffi::c_void);
}

/// A document parsed by libxml2, freed on drop.
struct LibxmlDoc(*mut std::ffi::c_void);

impl LibxmlDoc {
    fn parse(text: &str) -> Option<LibxmlDoc> {
        let len = i32::try_from(text.len()).ok()?;
        // SAFETY: the buffer and length describe `text`; libxml2 copies what it keeps.
        let doc = unsafe {
            xmlReadMemory(
                text.as_ptr().cast(),
                len,
                std::ptr::null(),
                std::ptr::null(),
                0,
            )
        };
        (!doc.is_null()).then_some(LibxmlDoc(doc))
    }

    /// Exclusive c14n (mode 1) of the whole document into libxml2's own buffer.
    fn exc_c14n(&self) -> Option<Vec<u8>> {
        let (n, out) = self.exc_c14n_raw();
        let bytes = usize::try_from(n).ok().filter(|_| !out.is_null()).map(|n| {
            // SAFETY: libxml2 returned `n` bytes at `out`.
            unsafe { std::slice::from_raw_parts(out, n) }.to_vec()
        });
        if !out.is_null() {
            // SAFETY: allocated by libxml2 with the default (malloc) allocator.
            unsafe { free(out.cast()) };
        }
        bytes
    }

    /// The measured call: canonicalize, then free the output (what our side's buffer reuse saves).
    fn exc_c14n_len(&self) -> i32 {
        let (n, out) = self.exc_c14n_raw();
        if !out.is_null() {
            // SAFETY: as above.
            unsafe { free(out.cast()) };
        }
        n
    }

    fn exc_c14n_raw(&self) -> (i32, *mut u8) {
        let mut out: *mut u8 = std::ptr::null_mut();
        // SAFETY: a live document, no node set, no prefixes; libxml2 mallocs `out`.
        let n = unsafe {
            xmlC14NDocDumpMemory(
                self.0,
                std::ptr::null_mut(),
                1,
                std::ptr::null_mut(),
                0,
                &mut out,
            )
        };
        (n, out)
    }
}

impl Drop for LibxmlDoc {
    fn drop(&mut self) {
        // SAFETY: the pointer came from xmlReadMemory and is freed once.
        unsafe { xmlFreeDoc(self.0) }
    }
}

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// CPU time of the calling thread (Linux CLOCK_THREAD_CPUTIME_ID = 3).
fn thread_cpu_now() -> Duration {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one properly laid out timespec into `ts`.
    let rc = unsafe { clock_gettime(3, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Criterion measurement: CPU time of the benchmarking thread, shown like wall time.
struct ThreadCpu(WallTime);

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.0.formatter()
    }
}

type Bench = Criterion<ThreadCpu>;

fn big_limits() -> XmlLimits {
    XmlLimits {
        max_nodes: 10_000_000,
        max_text_bytes: 64 << 20,
        ..XmlLimits::default()
    }
}

/// Exclusive c14n of the whole document, ours and libxml2's, after checking they agree.
fn bench_c14n(c: &mut Bench, name: &str, text: &str) -> Result<(), BoxError> {
    let doc = xml::parse(text, &big_limits())?;
    let lx = LibxmlDoc::parse(text).ok_or("libxml2 could not parse the document")?;
    let mut out = Vec::with_capacity(text.len() + 1024);
    c14n::canonicalize(doc.root(), &c14n::Options::EXCLUSIVE, None, &mut out)?;
    if Some(&out) != lx.exc_c14n().as_ref() {
        return Err(format!("{name}: exc-c14n output differs from libxml2's").into());
    }
    let mut g = c.benchmark_group(format!("c14n-{name}"));
    g.throughput(Throughput::Bytes(text.len() as u64));
    if text.len() > 100_000 {
        // Milliseconds per call: equal-sized samples, fewer of them.
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(15)
            .measurement_time(Duration::from_secs(3));
    }
    g.bench_function("ours", |b| {
        b.iter(|| {
            out.clear();
            c14n::canonicalize(doc.root(), &c14n::Options::EXCLUSIVE, None, &mut out)
                .expect("c14n");
            black_box(&out);
        })
    });
    g.bench_function("libxml2", |b| b.iter(|| black_box(lx.exc_c14n_len())));
    if text.len() < 100_000 {
        g.bench_function("ours-smev-transform", |b| {
            b.iter(|| {
                out.clear();
                smev_transform::transform(doc.root(), None, &mut out).expect("smev");
                black_box(&out);
            })
        });
        g.bench_function("ours-parse", |b| {
            b.iter(|| black_box(xml::parse(black_box(text), &XmlLimits::default())))
        });
    }
    g.finish();
    Ok(())
}

struct Case {
    id: &'static str,
    name: &'static str,
    key: &'static str,
    cert: &'static str,
    alg: SignatureAlg,
    gost: bool,
}

const CASES: &[Case] = &[
    Case {
        id: "ecdsa-p256",
        name: "ECDSA P-256 / SHA-256",
        key: "ec/ec-prime256v1-key.pem",
        cert: "ec/ec-prime256v1-cert.pem",
        alg: SignatureAlg::EcdsaSha256,
        gost: false,
    },
    Case {
        id: "gost-2012-256",
        name: "GOST 2012-256",
        key: "gost/gost-2012-256-key.pem",
        cert: "gost/gost-2012-256-cert.pem",
        alg: SignatureAlg::Gost2012_256,
        gost: true,
    },
    Case {
        id: "gost-2012-512",
        name: "GOST 2012-512",
        key: "gost/gost-2012-512-key.pem",
        cert: "gost/gost-2012-512-cert.pem",
        alg: SignatureAlg::Gost2012_512,
        gost: true,
    },
    Case {
        id: "rsa-2048",
        name: "RSA 2048 / SHA-256",
        key: "rsa/rsa-2048-key.pem",
        cert: "rsa/rsa-2048-cert.pem",
        alg: SignatureAlg::RsaSha256,
        gost: false,
    },
];

fn message_digest(alg: DigestAlg) -> Result<MessageDigest, BoxError> {
    Ok(match alg {
        DigestAlg::Sha1 => MessageDigest::sha1(),
        DigestAlg::Sha256 => MessageDigest::sha256(),
        DigestAlg::Sha384 => MessageDigest::sha384(),
        DigestAlg::Sha512 => MessageDigest::sha512(),
        // GOST R 34.11-2012 256/512 through the engine (NIDs 982, 983).
        DigestAlg::Gost256 => {
            MessageDigest::from_nid(Nid::from_raw(982)).ok_or("no Streebog-256")?
        }
        DigestAlg::Gost512 => {
            MessageDigest::from_nid(Nid::from_raw(983)).ok_or("no Streebog-512")?
        }
    })
}

fn signature_md(alg: SignatureAlg) -> Result<MessageDigest, BoxError> {
    message_digest(match alg {
        SignatureAlg::Gost2012_256 => DigestAlg::Gost256,
        SignatureAlg::Gost2012_512 => DigestAlg::Gost512,
        _ => DigestAlg::Sha256,
    })
}

/// The bytes the XML path hands to OpenSSL for `signed`: the SMEV-transformed signed element
/// (reference digest input) and the canonical SignedInfo (signature input).
fn crypto_inputs(signed: &str) -> Result<(Vec<u8>, Vec<u8>), BoxError> {
    let doc = xml::parse(signed, &XmlLimits::default())?;
    let target = doc
        .descendants()
        .find(|n| n.attribute("Id") == Some(TARGET_ID))
        .ok_or("no signed element")?;
    let si = doc
        .descendants()
        .find(|n| n.has_tag_name((DSIG_NS, "SignedInfo")))
        .ok_or("no SignedInfo")?;
    let mut reference = Vec::new();
    smev_transform::transform(target, None, &mut reference)?;
    let signed_info = c14n::canonicalize_to_vec(si, &c14n::Options::EXCLUSIVE, None)?;
    Ok((reference, signed_info))
}

fn verify_text(text: &str, store: &TrustStore) -> Result<(), BoxError> {
    let doc = xml::parse(text, &XmlLimits::default())?;
    verify_parsed(&doc, store)
}

fn verify_parsed(doc: &roxmltree::Document<'_>, store: &TrustStore) -> Result<(), BoxError> {
    // As the node finds them: the target by its element name, the holder beside it.
    let target = doc
        .descendants()
        .find(|n| n.has_tag_name((TYPES, "SenderProvidedRequestData")))
        .ok_or("no target")?;
    let holder = target
        .next_sibling_element()
        .filter(|n| n.has_tag_name(HOLDER))
        .ok_or("no holder")?;
    let v = verify_message(doc, target, holder, store)?;
    black_box(v.element);
    Ok(())
}

fn dsig_group<'c>(c: &'c mut Bench, id: &str) -> BenchmarkGroup<'c, ThreadCpu> {
    let mut g = c.benchmark_group(format!("dsig-{id}"));
    // RSA and GOST take up to a millisecond a call: equal-sized samples keep the run short.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(50)
        .measurement_time(Duration::from_millis(2500));
    g
}

fn bench_case(
    c: &mut Bench,
    case: &Case,
    text: &str,
    crypto: Crypto,
    store: &TrustStore,
) -> Result<(), BoxError> {
    let key = SigningKey::from_files(
        &keys().join(case.key),
        Some(&keys().join(case.cert)),
        None,
        Some(case.alg),
        crypto,
    )?;
    let limits = XmlLimits::default();
    let signed = sign_message(text, &limits, TARGET_ID, HOLDER, &key)?;
    verify_text(&signed, store).map_err(|e| format!("{}: {e}", case.name))?;
    let signed_doc = xml::parse(&signed, &limits)?;

    // The raw side: the same digest and signature algorithms over the same bytes.
    let private: PKey<Private> = load_private_key(&keys().join(case.key), None, &crypto)?.key;
    let public: PKey<Public> = key.certificate().public_key()?;
    let digest_md = message_digest(SignOptions::smev_for(case.alg).digest)?;
    let sig_md = signature_md(case.alg)?;
    let (reference, signed_info) = crypto_inputs(&signed)?;
    let raw_sig = Signer::new(sig_md, &private)?.sign_oneshot_to_vec(&signed_info)?;
    if !Verifier::new(sig_md, &public)?.verify_oneshot(&raw_sig, &signed_info)? {
        return Err(format!("{}: raw signature does not verify", case.name).into());
    }

    let mut g = dsig_group(c, case.id);
    g.bench_function("xml-sign", |b| {
        b.iter(|| {
            black_box(sign_message(
                black_box(text),
                &limits,
                TARGET_ID,
                HOLDER,
                &key,
            ))
        })
    });
    g.bench_function("xml-verify", |b| {
        b.iter(|| verify_text(black_box(&signed), store).expect("verify"))
    });
    g.bench_function("xml-verify-parsed", |b| {
        b.iter(|| verify_parsed(black_box(&signed_doc), store).expect("verify"))
    });
    g.bench_function("raw-sign", |b| {
        b.iter(|| {
            black_box(hash(digest_md, black_box(&reference)).expect("digest"));
            let mut s = Signer::new(sig_md, &private).expect("signer");
            black_box(
                s.sign_oneshot_to_vec(black_box(&signed_info))
                    .expect("sign"),
            )
        })
    });
    g.bench_function("raw-verify", |b| {
        b.iter(|| {
            black_box(hash(digest_md, black_box(&reference)).expect("digest"));
            let mut v = Verifier::new(sig_md, &public).expect("verifier");
            assert!(
                v.verify_oneshot(black_box(&raw_sig), black_box(&signed_info))
                    .expect("verify")
            );
        })
    });
    g.finish();
    Ok(())
}

/// Where criterion writes its estimates (the same rule criterion follows).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // target/<profile>/deps/dsig-HASH
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// The median time (ns) criterion estimated for `group/function` in this run, if it ran.
fn median_ns(group: &str, function: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(function)
        .join("new/estimates.json");
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    v.get("median")?.get("point_estimate")?.as_f64()
}

fn summary(since: SystemTime, text_len: usize, big_len: usize) {
    let us = |ns: f64| ns / 1000.0;
    let mut lines = Vec::new();
    for (name, len) in [("2kb", text_len), ("1mb", big_len)] {
        let g = format!("c14n-{name}");
        if let (Some(ours), Some(lx)) = (
            median_ns(&g, "ours", since),
            median_ns(&g, "libxml2", since),
        ) {
            let mbs = |ns: f64| len as f64 / ns * 1000.0;
            lines.push(format!(
                "exc-c14n {name} ({len} B): ours {:.1} µs ({:.0} MB/s) | libxml2 {:.1} µs ({:.0} MB/s) | libxml2/ours = {:.2}",
                us(ours),
                mbs(ours),
                us(lx),
                mbs(lx),
                lx / ours
            ));
        }
    }
    let mut rows = BTreeMap::new();
    for case in CASES {
        let g = format!("dsig-{}", case.id);
        let get = |f: &str| median_ns(&g, f, since);
        if let (Some(s), Some(v), Some(rs), Some(rv)) = (
            get("xml-sign"),
            get("xml-verify"),
            get("raw-sign"),
            get("raw-verify"),
        ) {
            let parsed = get("xml-verify-parsed")
                .map(|vp| {
                    format!(
                        " | verify on a parsed doc {:.1} µs, ratio {:.2}",
                        us(vp),
                        (s + vp) / (rs + rv)
                    )
                })
                .unwrap_or_default();
            rows.insert(
                case.id,
                format!(
                    "{:<22} XML sign {:>7.1} µs verify {:>7.1} µs | raw sign {:>7.1} µs verify {:>7.1} µs | (sign+verify)/raw = {:.2}{parsed}",
                    case.name,
                    us(s),
                    us(v),
                    us(rs),
                    us(rv),
                    (s + v) / (rs + rv)
                ),
            );
        }
    }
    lines.extend(CASES.iter().filter_map(|c| rows.remove(c.id)));
    if !lines.is_empty() {
        println!("\nsummary (criterion medians of this run):");
        for l in lines {
            println!("  {l}");
        }
    }
}

fn run(c: &mut Bench) -> Result<(usize, usize), BoxError> {
    let text = request();
    let big = big_document();
    bench_c14n(c, "2kb", &text)?;
    bench_c14n(c, "1mb", &big)?;

    let crypto = Crypto::load();
    let store = TrustStore::from_files(
        &[keys().join("cacert.pem"), keys().join("ca2cert.pem")],
        crypto,
    )?;
    for case in CASES {
        if case.gost && !crypto.gost_available() {
            println!(
                "{}: skipped ({})",
                case.name,
                crypto.gost_status().unwrap_or_default()
            );
            continue;
        }
        bench_case(c, case, &text, crypto, &store)?;
    }
    Ok((text.len(), big.len()))
}

fn main() -> std::process::ExitCode {
    let since = SystemTime::now();
    // Short defaults keep the whole run near two minutes; command-line options override them.
    let mut c = Criterion::default()
        .with_measurement(ThreadCpu(WallTime))
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .nresamples(20_000)
        .configure_from_args();
    let lens = run(&mut c);
    c.final_summary();
    match lens {
        Ok((text_len, big_len)) => {
            summary(since, text_len, big_len);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dsig bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
