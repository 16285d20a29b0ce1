//! Measures XMLDSig sign and verify of a ~2 KB SMEV SendRequest (ECDSA P-256, and GOST 2012-256 when the engine loads) next to raw OpenSSL sign+verify of 32 bytes in the same run, and c14n/SMEV-transform throughput.
//! It reports numbers only: no pass/fail thresholds on timings; it exits non-zero only when a signature fails to verify.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::sign::{Signer, Verifier};
use smev_adapter::config::XmlLimits;
use smev_adapter::dsig::{
    Crypto, DSIG_NS, DigestAlg, DsigError, Expect, KeySource, SignOptions, SignatureAlg,
    SigningKey, TrustStore, check_reference, insert_as_last_child, sign_element, verify,
};
use smev_adapter::xml::{self, c14n, smev_transform};

const TYPES: &str = "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.3";

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
  <ns1:SenderProvidedRequestData Id="SIGNED_BY_CONSUMER">
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

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// CPU time of this thread (Linux CLOCK_THREAD_CPUTIME_ID): the machine is shared, and
/// other processes' load must not count; falls back to wall time if the clock fails.
fn cpu_now() -> Option<Duration> {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointed-to, properly laid out struct.
    let rc = unsafe { clock_gettime(3, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Per-call CPU time of the fastest of `rounds` rounds of `iters` calls.
fn measure(iters: u32, rounds: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..iters / 4 + 1 {
        f();
    }
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let wall = Instant::now();
            let cpu = cpu_now();
            for _ in 0..iters {
                f();
            }
            match (cpu, cpu_now()) {
                (Some(a), Some(b)) => (b - a) / iters,
                _ => wall.elapsed() / iters,
            }
        })
        .collect();
    samples.sort();
    // The fastest round: the machine is shared, and noise only ever adds time.
    samples[0]
}

// libxml2's canonicalization, for comparison in the same run (linked from the system library).
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

    /// Exclusive c14n (mode 1) of the whole document; returns the output length.
    fn exc_c14n(&self) -> usize {
        let mut out: *mut u8 = std::ptr::null_mut();
        // SAFETY: a live document, no node set, no prefixes; libxml2 mallocs `out`, freed here.
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
        if !out.is_null() {
            // SAFETY: allocated by libxml2 with the default (malloc) allocator.
            unsafe { free(out.cast()) };
        }
        usize::try_from(n).unwrap_or(0)
    }
}

impl Drop for LibxmlDoc {
    fn drop(&mut self) {
        // SAFETY: the pointer came from xmlReadMemory and is freed once.
        unsafe { xmlFreeDoc(self.0) }
    }
}

/// A ~1 MB document of the same shape (many records).
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

fn c14n_vs_libxml2(name: &str, text: &str, iters: u32) -> Result<(), String> {
    let limits = XmlLimits {
        max_nodes: 10_000_000,
        max_text_bytes: 64 << 20,
        ..XmlLimits::default()
    };
    let doc = xml::parse(text, &limits).map_err(|e| e.to_string())?;
    let lx = LibxmlDoc::parse(text).ok_or("libxml2 could not parse")?;
    let mut out = Vec::with_capacity(text.len() + 1024);
    c14n::canonicalize(doc.root(), &c14n::Options::EXCLUSIVE, None, &mut out)
        .map_err(|e| e.to_string())?;
    if out.len() != lx.exc_c14n() {
        return Err(format!(
            "{name}: exc-c14n output lengths differ from libxml2's"
        ));
    }
    let ours = measure(iters, 9, || {
        out.clear();
        c14n::canonicalize(doc.root(), &c14n::Options::EXCLUSIVE, None, &mut out).expect("c14n");
        black_box(&out);
    });
    let theirs = measure(iters, 9, || {
        black_box(lx.exc_c14n());
    });
    let mb = |d: Duration| text.len() as f64 / d.as_secs_f64() / 1e6;
    println!(
        "exc-c14n {name:>5} ({:>7} bytes): ours {:>9.1} µs ({:>5.0} MB/s) | libxml2 {:>9.1} µs ({:>5.0} MB/s) | libxml2/ours = {:.2}",
        text.len(),
        us(ours),
        mb(ours),
        us(theirs),
        mb(theirs),
        us(theirs) / us(ours)
    );
    Ok(())
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn sign_request(text: &str, key: &SigningKey, opts: &SignOptions) -> Result<String, DsigError> {
    let doc =
        xml::parse(text, &XmlLimits::default()).map_err(|e| DsigError::Malformed(e.to_string()))?;
    let target = doc
        .descendants()
        .find(|n| n.has_tag_name((TYPES, "SenderProvidedRequestData")))
        .ok_or_else(|| DsigError::Malformed("no target".into()))?;
    let holder = doc
        .descendants()
        .find(|n| n.has_tag_name((TYPES, "CallerInformationSystemSignature")))
        .ok_or_else(|| DsigError::Malformed("no holder".into()))?;
    let frag = sign_element(&doc, target, key, opts)?;
    insert_as_last_child(text, holder, &frag)
}

fn verify_request(text: &str, store: &TrustStore) -> Result<(), DsigError> {
    let doc =
        xml::parse(text, &XmlLimits::default()).map_err(|e| DsigError::Malformed(e.to_string()))?;
    let target = doc
        .descendants()
        .find(|n| n.has_tag_name((TYPES, "SenderProvidedRequestData")))
        .ok_or_else(|| DsigError::Malformed("no target".into()))?;
    let sig = doc
        .descendants()
        .find(|n| n.has_tag_name((DSIG_NS, "Signature")))
        .ok_or_else(|| DsigError::Malformed("no signature".into()))?;
    let v = verify(
        &doc,
        sig,
        Expect::Element(target),
        &KeySource::Trusted(store),
    )?;
    black_box(v.element);
    Ok(())
}

fn raw(
    key: &PKey<Private>,
    public: &PKey<Public>,
    md: MessageDigest,
    data: &[u8],
) -> (Duration, Duration) {
    let sig = Signer::new(md, key)
        .and_then(|mut s| s.sign_oneshot_to_vec(data))
        .unwrap_or_default();
    let sign = measure(200, 15, || {
        let mut s = Signer::new(md, key).expect("signer");
        black_box(s.sign_oneshot_to_vec(black_box(data)).expect("sign"));
    });
    let verify = measure(200, 15, || {
        let mut v = Verifier::new(md, public).expect("verifier");
        black_box(v.verify_oneshot(&sig, black_box(data)).expect("verify"));
    });
    (sign, verify)
}

struct Case {
    name: &'static str,
    key: &'static str,
    cert: &'static str,
    alg: SignatureAlg,
    digest: DigestAlg,
}

fn run_case(case: &Case, text: &str, crypto: Crypto) -> Result<(), String> {
    let key = SigningKey::from_files(
        &keys().join(case.key),
        Some(&keys().join(case.cert)),
        None,
        Some(case.alg),
        crypto,
    )
    .map_err(|e| format!("{}: {e}", case.name))?;
    let store = TrustStore::from_files(
        &[keys().join("cacert.pem"), keys().join("ca2cert.pem")],
        crypto,
    )
    .map_err(|e| e.to_string())?;
    let opts = SignOptions {
        digest: case.digest,
        smev_transform: true,
        enveloped: false,
    };
    let signed = sign_request(text, &key, &opts).map_err(|e| e.to_string())?;
    verify_request(&signed, &store).map_err(|e| format!("{}: {e}", case.name))?;

    let sign = measure(200, 15, || {
        black_box(sign_request(black_box(text), &key, &opts).expect("sign"));
    });
    let verify_full = measure(200, 15, || {
        verify_request(black_box(&signed), &store).expect("verify");
    });
    let private = smev_adapter::dsig::load_private_key(&keys().join(case.key), None, &crypto)
        .map_err(|e| e.to_string())?
        .key;
    let public = key.certificate().public_key().map_err(|e| e.to_string())?;
    let md = match case.alg {
        SignatureAlg::Gost2012_256 => {
            MessageDigest::from_nid(openssl::nid::Nid::from_raw(982)).ok_or("no GOST digest")?
        }
        _ => MessageDigest::sha256(),
    };
    // The same without the parse (the node parses each message once, for everything).
    let unsigned_doc = xml::parse(text, &XmlLimits::default()).map_err(|e| e.to_string())?;
    let target = unsigned_doc
        .descendants()
        .find(|n| n.has_tag_name((TYPES, "SenderProvidedRequestData")))
        .ok_or("no target")?;
    let sign_parsed = measure(200, 15, || {
        black_box(sign_element(&unsigned_doc, target, &key, &opts).expect("sign"));
    });
    let signed_doc = xml::parse(&signed, &XmlLimits::default()).map_err(|e| e.to_string())?;
    let signed_target = signed_doc
        .descendants()
        .find(|n| n.has_tag_name((TYPES, "SenderProvidedRequestData")))
        .ok_or("no target")?;
    let sig = signed_doc
        .descendants()
        .find(|n| n.has_tag_name((DSIG_NS, "Signature")))
        .ok_or("no signature")?;
    let verify_parsed = measure(200, 15, || {
        let v = verify(
            &signed_doc,
            sig,
            Expect::Element(signed_target),
            &KeySource::Trusted(&store),
        )
        .expect("verify");
        black_box(v.element);
    });
    let reference_only = measure(200, 15, || {
        black_box(
            check_reference(&signed_doc, sig, Expect::Element(signed_target)).expect("digest"),
        );
    });
    let (raw_sign, raw_verify) = raw(&private, &public, md, &[0x5a; 32]);
    let (doc_sign, doc_verify) = raw(&private, &public, md, text.as_bytes());
    let xml_total = us(sign) + us(verify_full);
    let raw_total = us(raw_sign) + us(raw_verify);
    println!(
        "{:<22} sign {:>8.1} µs  verify {:>8.1} µs  | raw OpenSSL sign {:>8.1} µs  verify {:>8.1} µs | (sign+verify)/raw = {:.2} (XML work adds {:.0}%)",
        case.name,
        us(sign),
        us(verify_full),
        us(raw_sign),
        us(raw_verify),
        xml_total / raw_total,
        (xml_total / raw_total - 1.0) * 100.0
    );
    let doc_total = us(doc_sign) + us(doc_verify);
    println!(
        "{:<22} raw OpenSSL over the same {} bytes: sign {:>8.1} µs  verify {:>8.1} µs | (sign+verify)/raw-same-bytes = {:.2}",
        "",
        text.len(),
        us(doc_sign),
        us(doc_verify),
        xml_total / doc_total
    );
    let parsed_total = us(sign_parsed) + us(verify_parsed);
    println!(
        "{:<22} sign {:>8.1} µs  verify {:>8.1} µs  (documents already parsed) | ratio {:.2} (adds {:.0}%)",
        "",
        us(sign_parsed),
        us(verify_parsed),
        parsed_total / raw_total,
        (parsed_total / raw_total - 1.0) * 100.0
    );
    println!(
        "{:<22} of which the Reference alone (Id resolution + transforms + digest): {:.1} µs",
        "",
        us(reference_only)
    );
    Ok(())
}

fn main() -> ExitCode {
    let text = request();
    println!(
        "document: {} bytes (SendRequest, signed part {} bytes); sign = parse + SMEV transform digest + SignedInfo + signature + splice; verify = parse + Id resolution + digest + SignedInfo c14n + cached trust check + signature check",
        text.len(),
        text.find("<ns1:CallerInformationSystemSignature")
            .unwrap_or(0)
            .saturating_sub(text.find("<ns1:SenderProvidedRequestData").unwrap_or(0))
    );

    // Canonicalization alone.
    let doc = match xml::parse(&text, &XmlLimits::default()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("parse: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut sink = Vec::with_capacity(4096);
    let parse = measure(2000, 7, || {
        black_box(xml::parse(black_box(&text), &XmlLimits::default()).expect("parse"));
    });
    let exc = measure(2000, 7, || {
        sink.clear();
        c14n::canonicalize(doc.root(), &c14n::Options::EXCLUSIVE, None, &mut sink).expect("c14n");
        black_box(&sink);
    });
    let smev = measure(2000, 7, || {
        sink.clear();
        smev_transform::transform(doc.root(), None, &mut sink).expect("smev");
        black_box(&sink);
    });
    println!(
        "parse {:.1} µs; exc-c14n {:.1} µs ({:.0} MB/s); SMEV transform {:.1} µs ({:.0} MB/s)",
        us(parse),
        us(exc),
        text.len() as f64 / us(exc),
        us(smev),
        text.len() as f64 / us(smev)
    );

    for (name, doc, iters) in [("2 KB", text.clone(), 2000), ("1 MB", big_document(), 5)] {
        if let Err(e) = c14n_vs_libxml2(name, &doc, iters) {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }

    let crypto = Crypto::load();
    {
        use std::io::Write;
        use streebog::Digest;
        let data = text.as_bytes();
        let portable = measure(2000, 9, || {
            let mut h = streebog::Streebog256::new();
            h.update(black_box(data));
            black_box(h.finalize());
        });
        let sink = measure(2000, 9, || {
            let mut s = DigestAlg::Gost256.sink().expect("sink");
            s.write_all(black_box(data)).expect("write");
            black_box(s.finish().expect("finish"));
        });
        println!(
            "Streebog-256 of {} bytes: streebog crate {:.1} µs, DigestSink (engine when loaded: {}) {:.1} µs",
            data.len(),
            us(portable),
            crypto.gost_available(),
            us(sink)
        );
    }
    let mut cases = vec![Case {
        name: "ECDSA P-256 / SHA-256",
        key: "ec/ec-prime256v1-key.pem",
        cert: "ec/ec-prime256v1-cert.pem",
        alg: SignatureAlg::EcdsaSha256,
        digest: DigestAlg::Sha256,
    }];
    if crypto.gost_available() {
        cases.push(Case {
            name: "GOST 2012-256",
            key: "gost/gost-2012-256-key.pem",
            cert: "gost/gost-2012-256-cert.pem",
            alg: SignatureAlg::Gost2012_256,
            digest: DigestAlg::Gost256,
        });
    } else {
        println!("GOST skipped: {}", crypto.gost_status().unwrap_or_default());
    }
    for case in &cases {
        if let Err(e) = run_case(case, &text, crypto) {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
