//! C2SP signed notes with Ed25519 keys and the key text forms (vkey and
//! `PRIVATE+KEY+...`). Pure: no I/O.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::audit::merkle::Hash;
use crate::audit::{AuditError, Result};

/// Most bytes of a signed note we accept; the spec asks verifiers to take at
/// least 16 signatures, and post-quantum ones approach 5 kB each.
pub const NOTE_BYTES_MAX: usize = 128 * 1024;

/// Most signature lines of a note we accept.
pub const NOTE_SIGNATURES_MAX: usize = 64;

/// Signed-note signature type byte for Ed25519.
pub const SIGNATURE_TYPE_ED25519: u8 = 0x01;

const SIGNATURE_PREFIX: &str = "\u{2014} ";
const PRIVATE_KEY_PREFIX: &str = "PRIVATE+KEY+";

/// Canonical ASCII decimal: digits only, no leading zero unless exactly "0".
pub(crate) fn parse_decimal(text: &str) -> Option<u64> {
    let canonical =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return None;
    }
    text.parse().ok()
}

/// Standard, padded, canonical base64 of exactly one hash.
pub(crate) fn decode_hash(text: &str) -> Option<Hash> {
    let bytes = BASE64.decode(text).ok()?;
    let hash: Hash = bytes.try_into().ok()?;
    // The engine rejects non-zero trailing bits; re-encoding makes sure.
    (BASE64.encode(hash) == text).then_some(hash)
}

/// signed-note key ID: SHA-256(name || 0x0A || 0x01 || public key)[:4], big-endian.
fn key_id(name: &str, public: &VerifyingKey) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', SIGNATURE_TYPE_ED25519]);
    hasher.update(public.as_bytes());
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

pub(crate) fn key_error(reason: impl Into<String>) -> AuditError {
    AuditError::Key { reason: reason.into() }
}

/// Key names must be non-empty without Unicode spaces or `+` (signed-note);
/// control characters are excluded by the note rules as well.
pub(crate) fn check_key_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(key_error("key name is empty"));
    }
    if name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control()) {
        return Err(key_error(format!(
            "key name {name:?} contains a space, plus or control character"
        )));
    }
    Ok(())
}

/// Parses `<hex8 key id>` and `<base64(0x01 || 32 bytes)>`, the tail shared
/// by both key text forms.
fn parse_key_tail(id_hex: &str, encoded: &str) -> Result<(u32, [u8; 32])> {
    let id_ok = id_hex.len() == 8 && id_hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !id_ok {
        return Err(key_error("key id is not 8 lowercase hex digits"));
    }
    let id = u32::from_str_radix(id_hex, 16).map_err(|_| key_error("key id is not hex"))?;
    let bytes = BASE64
        .decode(encoded)
        .map_err(|e| key_error(format!("bad base64 key: {e}")))?;
    let Some((&kind, material)) = bytes.split_first() else {
        return Err(key_error("key is empty"));
    };
    if kind != SIGNATURE_TYPE_ED25519 {
        return Err(key_error(format!("unsupported key type {kind:#04x}")));
    }
    let material: [u8; 32] = material
        .try_into()
        .map_err(|_| key_error(format!("ed25519 key is {} bytes, expected 32", material.len())))?;
    Ok((id, material))
}

fn encode_key_material(material: &[u8; 32]) -> String {
    let mut bytes = Vec::with_capacity(33);
    bytes.push(SIGNATURE_TYPE_ED25519);
    bytes.extend_from_slice(material);
    BASE64.encode(bytes)
}

/// A note signing key: name, key ID and Ed25519 secret.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A fresh random key from the operating system's generator.
    ///
    /// # Errors
    /// [`AuditError::Key`] on an invalid key name.
    pub fn generate(name: &str) -> Result<NoteSigner> {
        NoteSigner::from_seed(name, SigningKey::generate(&mut rand::rngs::OsRng).to_bytes())
    }

    /// The key with this 32-byte Ed25519 seed.
    ///
    /// # Errors
    /// [`AuditError::Key`] on an invalid key name.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<NoteSigner> {
        check_key_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(name, &key.verifying_key());
        Ok(NoteSigner {
            name: name.to_string(),
            key_id,
            key,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex8 id>+<base64(0x01 || seed)>`.
    ///
    /// # Errors
    /// [`AuditError::Key`] on any deviation, including a key id that does
    /// not match the key.
    pub fn parse(text: &str) -> Result<NoteSigner> {
        let rest = text
            .strip_prefix(PRIVATE_KEY_PREFIX)
            .ok_or_else(|| key_error("private key does not start with PRIVATE+KEY+"))?;
        // The base64 key may itself contain '+', so split off two fields only.
        let parts: Vec<&str> = rest.splitn(3, '+').collect();
        let [name, id_hex, encoded] = parts[..] else {
            return Err(key_error("private key does not have the form PRIVATE+KEY+name+id+key"));
        };
        let (id, seed) = parse_key_tail(id_hex, encoded)?;
        let signer = NoteSigner::from_seed(name, seed)?;
        if signer.key_id != id {
            return Err(key_error("private key id does not match the key"));
        }
        Ok(signer)
    }

    /// The `PRIVATE+KEY+...` text form. Secret: store it like a password.
    pub fn to_private_key_text(&self) -> String {
        format!(
            "{PRIVATE_KEY_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            encode_key_material(&self.key.to_bytes())
        )
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }
}

/// A note verification key: name, key ID and Ed25519 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses a vkey: `<name>+<hex8 id>+<base64(0x01 || public key)>`.
    ///
    /// # Errors
    /// [`AuditError::Key`] on any deviation, an invalid curve point, or a
    /// key id that does not match the key.
    pub fn parse(text: &str) -> Result<NoteVerifier> {
        let parts: Vec<&str> = text.splitn(3, '+').collect();
        let [name, id_hex, encoded] = parts[..] else {
            return Err(key_error("verifier key does not have the form name+id+key"));
        };
        check_key_name(name)?;
        let (id, public) = parse_key_tail(id_hex, encoded)?;
        let key =
            VerifyingKey::from_bytes(&public).map_err(|_| key_error("public key is not a valid ed25519 point"))?;
        if key_id(name, &key) != id {
            return Err(key_error("verifier key id does not match the key"));
        }
        Ok(NoteVerifier {
            name: name.to_string(),
            key_id: id,
            key,
        })
    }

    /// The vkey text form.
    pub fn to_vkey(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            encode_key_material(self.key.as_bytes())
        )
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }
}

fn note_error(line: usize, reason: impl Into<String>) -> AuditError {
    AuditError::Text {
        what: "signed note",
        line,
        reason: reason.into(),
    }
}

/// Rules every note text and whole note obey: size limit, no control
/// characters but newline, final newline.
fn check_note_text(text: &str) -> Result<()> {
    if text.len() > NOTE_BYTES_MAX {
        return Err(note_error(0, format!("note exceeds {NOTE_BYTES_MAX} bytes")));
    }
    if let Some(pos) = text.find(|c: char| c < ' ' && c != '\n') {
        let line = text[..pos].matches('\n').count() + 1;
        return Err(note_error(line, "control character other than newline"));
    }
    if !text.ends_with('\n') {
        return Err(note_error(
            text.matches('\n').count() + 1,
            "text does not end in a newline",
        ));
    }
    Ok(())
}

/// Signs `text` (which must end in a newline) and returns the whole note:
/// text, blank line, one signature line.
///
/// # Errors
/// [`AuditError::Text`] if the text breaks the note rules.
pub fn sign_note(text: &str, signer: &NoteSigner) -> Result<String> {
    check_note_text(text)?;
    let signature = signer.key.sign(text.as_bytes());
    let mut blob = Vec::with_capacity(4 + 64);
    blob.extend_from_slice(&signer.key_id.to_be_bytes());
    blob.extend_from_slice(&signature.to_bytes());
    Ok(format!(
        "{text}\n{SIGNATURE_PREFIX}{} {}\n",
        signer.name,
        BASE64.encode(blob)
    ))
}

/// Verifies a note against one trusted key and returns its text (with the
/// final newline). Lines from other keys are ignored, as the spec requires;
/// a line from our key that fails, or a repeated one, rejects the note.
///
/// # Errors
/// [`AuditError::Text`] for malformed notes, [`AuditError::BadSignature`],
/// [`AuditError::NoSignature`].
pub fn verify_note<'a>(note: &'a str, verifier: &NoteVerifier) -> Result<&'a str> {
    check_note_text(note)?;
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| note_error(0, "no blank line before the signatures"))?;
    let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
    let first_sig_line = text.matches('\n').count() + 2;
    let mut verified = false;
    for (i, line) in signatures.split_terminator('\n').enumerate() {
        let line_no = first_sig_line + i;
        if i == NOTE_SIGNATURES_MAX {
            return Err(note_error(
                line_no,
                format!("more than {NOTE_SIGNATURES_MAX} signatures"),
            ));
        }
        let (name, id, signature) = parse_signature_line(line, line_no)?;
        if name != verifier.name || id != verifier.key_id {
            continue;
        }
        if verified {
            return Err(note_error(line_no, "repeated signature from the same key"));
        }
        let signature = Signature::from_slice(&signature).map_err(|_| bad_signature(verifier))?;
        verifier
            .key
            .verify_strict(text.as_bytes(), &signature)
            .map_err(|_| bad_signature(verifier))?;
        verified = true;
    }
    if !verified {
        return Err(AuditError::NoSignature {
            key: verifier.to_vkey(),
        });
    }
    Ok(text)
}

fn bad_signature(verifier: &NoteVerifier) -> AuditError {
    AuditError::BadSignature {
        key: verifier.to_vkey(),
    }
}

/// `— <name> <base64(id || signature)>` split into name, key ID and
/// signature bytes.
fn parse_signature_line(line: &str, line_no: usize) -> Result<(&str, u32, Vec<u8>)> {
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or_else(|| note_error(line_no, "signature line does not start with an em dash and space"))?;
    let (name, encoded) = rest
        .split_once(' ')
        .ok_or_else(|| note_error(line_no, "signature line has no space after the key name"))?;
    check_key_name(name).map_err(|_| note_error(line_no, "invalid key name in signature line"))?;
    let blob = BASE64
        .decode(encoded)
        .map_err(|e| note_error(line_no, format!("bad base64 signature: {e}")))?;
    if blob.len() < 5 {
        return Err(note_error(line_no, "signature is shorter than a key id plus one byte"));
    }
    let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
    Ok((name, id, blob[4..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example key and note of golang.org/x/mod/sumdb/note, the reference
    // implementation: Ed25519 is deterministic, so signing must reproduce it.
    const GO_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_SIG: &str = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";

    #[test]
    fn reference_vector_signs_and_verifies_byte_for_byte() {
        let signer = NoteSigner::parse(GO_SKEY).unwrap();
        assert_eq!(signer.to_private_key_text(), GO_SKEY);
        assert_eq!(signer.verifier().to_vkey(), GO_VKEY);
        let verifier = NoteVerifier::parse(GO_VKEY).unwrap();
        assert_eq!(verifier.key_id(), 0xc74f20a3);
        let note = sign_note(GO_TEXT, &signer).unwrap();
        assert_eq!(note, format!("{GO_TEXT}\n\u{2014} PeterNeumann {GO_SIG}\n"));
        assert_eq!(verify_note(&note, &verifier).unwrap(), GO_TEXT);
    }

    #[test]
    fn mangled_keys_are_rejected() {
        for key in [GO_SKEY, GO_VKEY] {
            let parse = |k: &str| {
                if key == GO_SKEY {
                    NoteSigner::parse(k).map(|_| ())
                } else {
                    NoteVerifier::parse(k).map(|_| ())
                }
            };
            assert!(parse(key).is_ok());
            let bytes = key.as_bytes();
            for i in 0..bytes.len() {
                let mut mangled = bytes.to_vec();
                mangled[i] = mangled[i].wrapping_add(1);
                if let Ok(text) = std::str::from_utf8(&mangled) {
                    assert!(parse(text).is_err(), "accepted {text}");
                }
                let cut = std::str::from_utf8(&bytes[..i]).unwrap();
                assert!(parse(cut).is_err(), "accepted prefix {cut}");
            }
        }
    }

    #[test]
    fn malformed_notes_are_rejected() {
        let signer = NoteSigner::parse(GO_SKEY).unwrap();
        let verifier = signer.verifier();
        let note = sign_note(GO_TEXT, &signer).unwrap();
        let bad = [
            note.trim_end().to_string(),
            note.replace("\n\n", "\n"),
            note.replace('\u{2014}', "-"),
            note.replace("PeterNeumann x08", "PeterNeumannx08"),
            note.replace("x08go", "x08g!"),
            note.replace("If you", "If\tyou"),
            format!("{note}\u{2014} PeterNeumann {GO_SIG}\n"),
        ];
        for text in bad {
            assert!(verify_note(&text, &verifier).is_err(), "accepted {text:?}");
        }
        assert!(sign_note("no newline", &signer).is_err());
    }

    #[test]
    fn decimal_and_hash_parsing_are_canonical() {
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
        for bad in ["", "00", "01", "-1", "+1", " 1", "1 ", "18446744073709551616", "١"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
        let good = BASE64.encode([0xabu8; 32]);
        assert_eq!(decode_hash(&good), Some([0xab; 32]));
        let mut non_canonical = good.clone();
        non_canonical.replace_range(42..43, "r");
        assert_eq!(decode_hash(&non_canonical), None);
    }
}
