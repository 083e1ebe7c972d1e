//! Cluster membership proofs for the handshake (`docs/format/wire.md` §2): a shared cluster
//! secret, nonces, and the keyed-BLAKE3 proofs each side computes over the handshake
//! transcript. The secret itself never travels; each side proves it knows it by a MAC over
//! both sides' fresh nonces, labelled with its role in the exchange so that one side's proof
//! can never be replayed as the other's.

use std::io::Write;
use std::path::Path;

use bytes::BytesMut;

use crate::codec::{DecodeError, Reader, Wire};

/// Bytes of a nonce and of a proof.
pub const NONCE_BYTES: usize = 32;
/// Bytes of a proof (a keyed BLAKE3 hash).
pub const PROOF_BYTES: usize = 32;
/// The shortest secret accepted: 16 bytes (128 bits if random).
pub const MIN_SECRET_BYTES: usize = 16;

/// Key-derivation context: the secret's text is turned into the MAC key with it.
const KDF_CONTEXT: &str = "tierkv 2026-12 cluster secret -> handshake MAC key v2";
/// Label of the connector's proof.
pub(crate) const CONNECTOR_LABEL: &[u8] = b"tierkv v2 connector proof\0";
/// Label of the acceptor's proof.
pub(crate) const ACCEPTOR_LABEL: &[u8] = b"tierkv v2 acceptor proof\0";

/// Why a cluster secret could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret is shorter than [`MIN_SECRET_BYTES`] (after trimming whitespace).
    #[error("cluster secret too short: {len} bytes, at least {MIN_SECRET_BYTES} needed")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// The secret file could not be read or written.
    #[error("cluster secret file {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The secret file can be read by other users.
    #[error(
        "cluster secret file {path} is readable by group or others (mode {mode:o}); chmod 600 it"
    )]
    Permissions {
        /// The file.
        path: std::path::PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The OS random source failed.
    #[error("random source: {0}")]
    Random(String),
}

/// The key every member of a cluster shares. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret {
    key: [u8; 32],
    insecure: bool,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.insecure {
            f.write_str("ClusterSecret(none: insecure, any peer is accepted)")
        } else {
            f.write_str("ClusterSecret(<redacted>)")
        }
    }
}

impl Default for ClusterSecret {
    /// The insecure well-known secret: see [`ClusterSecret::insecure`].
    fn default() -> Self {
        Self::insecure()
    }
}

impl ClusterSecret {
    /// A secret from its text (leading and trailing whitespace ignored; at least
    /// [`MIN_SECRET_BYTES`] bytes).
    pub fn from_text(text: &[u8]) -> Result<Self, SecretError> {
        let text = text.trim_ascii();
        if text.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort { len: text.len() });
        }
        Ok(Self {
            key: blake3::derive_key(KDF_CONTEXT, text),
            insecure: false,
        })
    }

    /// The well-known empty secret of endpoints run with no authentication (tests and
    /// `insecure-no-auth`): such endpoints talk to each other, and a peer that has a real
    /// secret refuses them, as they refuse it.
    pub fn insecure() -> Self {
        Self {
            key: blake3::derive_key(KDF_CONTEXT, b""),
            insecure: true,
        }
    }

    /// Whether this is the insecure well-known secret.
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// Reads a secret file. On Unix the file must not be readable by group or others.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let io = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read(path).map_err(io)?;
        check_private(path)?;
        Self::from_text(&text)
    }

    /// Reads the secret file at `path`, or creates it (mode 0600) with 32 random bytes in hex
    /// when it does not exist. Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), SecretError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let mut raw = [0u8; 32];
        getrandom::getrandom(&mut raw).map_err(|e| SecretError::Random(e.to_string()))?;
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let io = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).map_err(io)?;
        f.write_all(format!("{hex}\n").as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok((Self::from_text(hex.as_bytes())?, true))
    }

    /// The keyed hash of `label` followed by `parts`.
    pub(crate) fn mac(&self, label: &[u8], parts: &[&[u8]]) -> Proof {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(label);
        for p in parts {
            h.update(p);
        }
        Proof(*h.finalize().as_bytes())
    }

    /// Whether `proof` is the keyed hash of `label` and `parts`, compared in constant time.
    pub(crate) fn verify(&self, proof: &Proof, label: &[u8], parts: &[&[u8]]) -> bool {
        let expected = blake3::Hash::from(self.mac(label, parts).0);
        // `blake3::Hash` compares in constant time.
        expected == blake3::Hash::from(proof.0)
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| SecretError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), SecretError> {
    Ok(())
}

/// A fresh random value each side contributes to the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Nonce(pub [u8; NONCE_BYTES]);

impl Nonce {
    /// A nonce from the OS random source.
    pub fn random() -> Result<Self, SecretError> {
        let mut n = [0u8; NONCE_BYTES];
        getrandom::getrandom(&mut n).map_err(|e| SecretError::Random(e.to_string()))?;
        Ok(Self(n))
    }
}

/// A keyed BLAKE3 hash proving knowledge of the cluster secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Proof(pub [u8; PROOF_BYTES]);

impl Wire for Nonce {
    fn encode(&self, buf: &mut BytesMut) {
        buf.extend_from_slice(&self.0);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self(r.array("nonce")?))
    }
}

impl Wire for Proof {
    fn encode(&self, buf: &mut BytesMut) {
        buf.extend_from_slice(&self.0);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self(r.array("proof")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(
            ClusterSecret::from_text(b"  short  \n"),
            Err(SecretError::TooShort { len: 5 })
        ));
        assert!(ClusterSecret::from_text(b"sixteen bytes ok").is_ok());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let s = ClusterSecret::from_text(b"a very secret cluster secret").unwrap();
        assert_eq!(format!("{s:?}"), "ClusterSecret(<redacted>)");
    }

    #[test]
    fn proofs_depend_on_secret_label_and_transcript() {
        let a = ClusterSecret::from_text(b"secret number one!").unwrap();
        let b = ClusterSecret::from_text(b"secret number two!").unwrap();
        let p = a.mac(CONNECTOR_LABEL, &[b"transcript"]);
        assert!(a.verify(&p, CONNECTOR_LABEL, &[b"transcript"]));
        assert!(!b.verify(&p, CONNECTOR_LABEL, &[b"transcript"]));
        assert!(!a.verify(&p, ACCEPTOR_LABEL, &[b"transcript"]));
        assert!(!a.verify(&p, CONNECTOR_LABEL, &[b"transcripT"]));
        assert!(!ClusterSecret::insecure().verify(&p, CONNECTOR_LABEL, &[b"transcript"]));
    }

    #[test]
    fn a_created_secret_file_is_private_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("tierkv-secret-{}", std::process::id()));
        let path = dir.join("cluster-secret");
        let _ = std::fs::remove_file(&path);
        let (made, created) = ClusterSecret::load_or_create(&path).unwrap();
        assert!(created);
        let (again, created) = ClusterSecret::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(made, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                ClusterSecret::load(&path),
                Err(SecretError::Permissions { .. })
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The token admin endpoints require (`admin-token`): never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Whether an HTTP request head (request line and headers) carries `Authorization: Bearer
/// <token>` with `token` (header name in any case; compared in constant time): the admin
/// endpoints' check when an `admin-token` is configured.
pub fn bearer_matches(head: &[u8], token: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let given = text.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("authorization") {
            return None;
        }
        let value = value.trim();
        let (scheme, credential) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| credential.trim().to_string())
    });
    let Some(given) = given else {
        return false;
    };
    let given = given.as_bytes();
    // Every byte is compared whatever the first difference; the lengths are not secret.
    given.len() == token.len()
        && given
            .iter()
            .zip(token)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod bearer_tests {
    use super::bearer_matches;

    #[test]
    fn only_the_configured_bearer_token_matches() {
        let head = b"POST /drain HTTP/1.0\r\nHost: x\r\nauthorization: Bearer s3cret\r\n\r\n";
        assert!(bearer_matches(head, b"s3cret"));
        assert!(!bearer_matches(head, b"s3cre"));
        assert!(!bearer_matches(head, b"s3crex"));
        assert!(!bearer_matches(b"GET / HTTP/1.0\r\n\r\n", b"s3cret"));
        let basic = b"GET / HTTP/1.0\r\nAuthorization: Basic s3cret\r\n\r\n";
        assert!(!bearer_matches(basic, b"s3cret"));
        // A header line in the request line's place does not count.
        assert!(!bearer_matches(
            b"Authorization: Bearer s3cret\r\n\r\n",
            b"s3cret"
        ));
    }
}
