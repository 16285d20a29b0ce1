//! Owns access to GOST R 34.10/34.11-2012: loading OpenSSL's `gost` engine once per process through the ENGINE API, and the `Crypto` handle that says whether GOST may be used.
//! Must not require anything from the user's environment (no OPENSSL_CONF, no exports) and must not make RSA/ECDSA depend on the engine.

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::OnceLock;

use openssl::hash::MessageDigest;
use openssl::nid::Nid;

use super::DsigError;

/// The exact message every GOST operation fails with when the engine is missing.
pub const GOST_UNAVAILABLE: &str = "GOST not available: install libengine-gost-openssl";

/// OpenSSL NIDs (obj_mac.h); the openssl crate names only the older GOST objects.
pub(crate) const NID_GOST3410_2012_256: Nid = Nid::from_raw(979);
pub(crate) const NID_GOST3410_2012_512: Nid = Nid::from_raw(980);
const NID_GOST3411_2012_256: Nid = Nid::from_raw(982);
const NID_GOST3411_2012_512: Nid = Nid::from_raw(983);

// ENGINE_METHOD_* flags (openssl/engine.h): digests, public-key methods and their ASN.1 codecs.
const ENGINE_METHOD_DIGESTS: c_uint = 0x0080;
const ENGINE_METHOD_PKEY_METHS: c_uint = 0x0200;
const ENGINE_METHOD_PKEY_ASN1_METHS: c_uint = 0x0400;

// The ENGINE API is deprecated in OpenSSL 3 but present in libcrypto, which openssl-sys links;
// openssl-sys does not declare it, so the few functions needed are declared here.
unsafe extern "C" {
    fn ENGINE_load_builtin_engines();
    fn ENGINE_by_id(id: *const c_char) -> *mut c_void;
    fn ENGINE_init(e: *mut c_void) -> c_int;
    fn ENGINE_set_default(e: *mut c_void, flags: c_uint) -> c_int;
    fn ENGINE_finish(e: *mut c_void) -> c_int;
    fn ENGINE_free(e: *mut c_void) -> c_int;
    fn EVP_PKEY_CTX_ctrl_str(ctx: *mut c_void, kind: *const c_char, value: *const c_char) -> c_int;
}

/// Sets the GOST key-generation parameter set (`A`, `B`, `C`, ...) on a keygen context.
pub(crate) fn gost_paramset(
    ctx: &mut openssl::pkey_ctx::PkeyCtx<()>,
    paramset: &str,
) -> Result<(), DsigError> {
    use foreign_types::ForeignType;
    let value = std::ffi::CString::new(paramset)
        .map_err(|_| DsigError::Key("invalid GOST parameter set".into()))?;
    // SAFETY: the context pointer is live for the borrow; both strings are NUL-terminated.
    let rc = unsafe {
        EVP_PKEY_CTX_ctrl_str(
            ctx.as_ptr().cast::<c_void>(),
            c"paramset".as_ptr(),
            value.as_ptr(),
        )
    };
    if rc > 0 {
        Ok(())
    } else {
        Err(DsigError::Openssl(openssl::error::ErrorStack::get()))
    }
}

/// Loads the `gost` engine (from OpenSSL's engines directory) and makes it the default for its
/// algorithms. Runs once per process; later calls return the first outcome.
static ENGINE: OnceLock<Result<(), String>> = OnceLock::new();

fn load_engine() -> &'static Result<(), String> {
    ENGINE.get_or_init(|| {
        openssl::init();
        // SAFETY: plain calls into libcrypto with a NUL-terminated id; the engine handle is
        // checked for null, released on every failure path, and on success its functional
        // reference is kept for the life of the process (the engine stays the default).
        unsafe {
            ENGINE_load_builtin_engines();
            let e = ENGINE_by_id(c"gost".as_ptr());
            if e.is_null() {
                // Clear the error queue so later OpenSSL errors are not misattributed.
                let _ = openssl::error::ErrorStack::get();
                return Err("OpenSSL has no `gost` engine".into());
            }
            if ENGINE_init(e) != 1 {
                let _ = openssl::error::ErrorStack::get();
                ENGINE_free(e);
                return Err("the `gost` engine failed to initialise".into());
            }
            let flags =
                ENGINE_METHOD_DIGESTS | ENGINE_METHOD_PKEY_METHS | ENGINE_METHOD_PKEY_ASN1_METHS;
            if ENGINE_set_default(e, flags) != 1 {
                let _ = openssl::error::ErrorStack::get();
                ENGINE_finish(e);
                ENGINE_free(e);
                return Err("the `gost` engine could not be made the default".into());
            }
            // Keep the functional reference (ENGINE_init); drop the structural one.
            ENGINE_free(e);
        }
        Ok(())
    })
}

/// Which optional algorithms this process may use. Cheap to copy; create it once at start.
#[derive(Clone, Copy, Debug)]
pub struct Crypto {
    gost: bool,
}

impl Crypto {
    /// Tries to load the GOST engine (once per process). Never fails: without the engine,
    /// RSA and ECDSA work and GOST operations fail with [`GOST_UNAVAILABLE`].
    pub fn load() -> Crypto {
        Crypto {
            gost: load_engine().is_ok(),
        }
    }

    /// A handle that never uses GOST, as on a machine without the engine.
    pub fn without_gost() -> Crypto {
        Crypto { gost: false }
    }

    /// Whether GOST signatures and GOST-keyed certificates can be used.
    pub fn gost_available(&self) -> bool {
        self.gost
    }

    /// Why GOST is unavailable in this process (`None` when it is available).
    pub fn gost_status(&self) -> Option<String> {
        if self.gost {
            return None;
        }
        match load_engine() {
            Err(why) => Some(format!("{GOST_UNAVAILABLE} ({why})")),
            Ok(()) => Some(GOST_UNAVAILABLE.to_owned()),
        }
    }

    pub(crate) fn require_gost(&self) -> Result<(), DsigError> {
        if self.gost {
            Ok(())
        } else {
            Err(DsigError::GostUnavailable)
        }
    }

    /// The OpenSSL digest for GOST R 34.11-2012 (256 or 512 bits), through the engine.
    pub(crate) fn gost_digest(&self, bits512: bool) -> Result<MessageDigest, DsigError> {
        self.require_gost()?;
        let nid = if bits512 {
            NID_GOST3411_2012_512
        } else {
            NID_GOST3411_2012_256
        };
        MessageDigest::from_nid(nid).ok_or(DsigError::GostUnavailable)
    }
}

/// The engine's GOST R 34.11-2012 digest when the engine is loaded in this process (it is
/// faster than the portable one); `None` otherwise. Digests need no engine: callers fall back
/// to the portable implementation, which gives the same bytes.
pub(crate) fn engine_digest(bits512: bool) -> Option<MessageDigest> {
    // Never load the engine as a side effect of a digest.
    if !engine_ready() {
        return None;
    }
    MessageDigest::from_nid(if bits512 {
        NID_GOST3411_2012_512
    } else {
        NID_GOST3411_2012_256
    })
}

/// Whether [`Crypto::load`] has loaded the engine in this process.
fn engine_ready() -> bool {
    ENGINE.get().is_some_and(Result::is_ok)
}

/// Whether DER data names a GOST R 34.10-2012 key (OID 1.2.643.7.1.1.1.1 or .2), so that a
/// decoding failure without the engine can be reported as "GOST not available".
pub(crate) fn mentions_gost_key(der: &[u8]) -> bool {
    const OID_PREFIX: &[u8] = &[0x06, 0x08, 0x2a, 0x85, 0x03, 0x07, 0x01, 0x01, 0x01];
    der.windows(OID_PREFIX.len() + 1)
        .any(|w| w.starts_with(OID_PREFIX) && matches!(w[OID_PREFIX.len()], 1 | 2))
}
