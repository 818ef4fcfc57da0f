//! SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677) for SMTP AUTH.
//!
//! ```text
//! C: AUTH SCRAM-SHA-256 base64(gs2-header client-first-bare)    n,,n=user,r=CNONCE
//! S: 334 base64(server-first)                                    r=CNONCE+SNONCE,s=SALT,i=4096
//! C: base64(client-final)                                        c=biws,r=...,p=PROOF
//! S: 334 base64(server-final)                                    v=SERVER-SIGNATURE
//! C: (empty line)
//! S: 235 2.7.0 Authentication successful
//! ```
//!
//! The password is borrowed for the one call that needs it (the client-final message) and
//! the keys derived from it are wiped before that call returns. What stays in [`super::Sasl`]
//! is the signature the server must send back: SCRAM's point is that the server proves it
//! knows the password too, so a `235` before a verified `v=` is not a success
//! ([`super::Sasl::server_proven`]).
//!
//! The server chooses the PBKDF2 iteration count; more than [`MAX_ITERATIONS`] is refused so
//! that a hostile server cannot make the client spin.

#[cfg(feature = "scram")]
use base64::engine::general_purpose::STANDARD;
#[cfg(feature = "scram")]
use base64::Engine;
#[cfg(feature = "scram")]
use hmac::{Hmac, Mac};
#[cfg(feature = "scram")]
use sha2::{Digest, Sha256};
#[cfg(feature = "scram")]
use subtle::ConstantTimeEq;
#[cfg(feature = "scram")]
use zeroize::Zeroize;

#[cfg(feature = "scram")]
use super::{
    cancel, decode_challenge, write_encoded, Binding, Credentials, Mechanism, Piece, Response,
    SaslError, MAX_CHALLENGE,
};
#[cfg(feature = "scram")]
use crate::buf::Buffer;

#[cfg(feature = "scram")]
type HmacSha256 = Hmac<Sha256>;

/// Most PBKDF2 iterations a server may ask for. RFC 7677 asks for at least 4096; real servers
/// use 4096 to a few hundred thousand. A million takes about a second.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// Longest channel binding data accepted (a SHA-512 certificate hash is 64 bytes).
pub const MAX_BINDING: usize = 64;

/// Longest decoded salt accepted.
pub const MAX_SALT: usize = 256;

/// Room for the gs2 header (with an escaped authzid) and the binding data together.
#[cfg(feature = "scram")]
const MAX_CBIND: usize = 512;

/// Where the server's proof stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProofState {
    /// No client-final message sent yet.
    Pending,
    /// Client-final sent; the server's `v=` is due.
    #[cfg_attr(not(feature = "scram"), allow(dead_code))]
    Expected,
    /// The server sent the right `v=`.
    Verified,
    /// The server's `v=` was wrong, malformed or replaced by something else.
    Wrong,
}

/// The signature the server must send in `v=`, and whether it did.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerProof {
    state: ProofState,
    /// Only a SCRAM build has a signature to keep (32 bytes less in every session without).
    #[cfg(feature = "scram")]
    signature: [u8; 32],
}

impl ServerProof {
    pub(crate) const NONE: ServerProof = ServerProof {
        state: ProofState::Pending,
        #[cfg(feature = "scram")]
        signature: [0; 32],
    };

    /// The exchange was cancelled after the client-final: whatever the server says next, it
    /// has not proven itself.
    pub(crate) const WRONG: ServerProof = ServerProof {
        state: ProofState::Wrong,
        #[cfg(feature = "scram")]
        signature: [0; 32],
    };

    /// Without SCRAM always `Pending`: no exchange sends a client-final, and [`Self::WRONG`]
    /// replaces only a proof that was under way. Said as a constant, the checks of the proof
    /// leave a device build (44 B).
    pub(crate) fn state(&self) -> ProofState {
        if cfg!(feature = "scram") {
            self.state
        } else {
            ProofState::Pending
        }
    }
}

/// Refuses a nonce, name or binding SCRAM cannot carry, and a binding that does not fit the
/// mechanism (`p=` only with -PLUS, and -PLUS only with `p=`).
#[cfg(feature = "scram")]
pub(crate) fn check(mechanism: Mechanism, creds: &Credentials<'_>) -> Result<(), SaslError> {
    let Credentials::Scram {
        authzid,
        username,
        password: _,
        nonce,
        binding,
    } = *creds
    else {
        return Err(SaslError::WrongCredentials);
    };
    match (mechanism, binding) {
        (Mechanism::ScramSha256Plus, Binding::Bound(cb)) => {
            if cb.data.is_empty() || cb.data.len() > MAX_BINDING {
                return Err(SaslError::InvalidCredential);
            }
        }
        (Mechanism::ScramSha256, Binding::Unsupported | Binding::NotOffered) => {}
        _ => return Err(SaslError::WrongCredentials),
    }
    if !valid_nonce(nonce.as_bytes()) {
        return Err(SaslError::InvalidCredential);
    }
    // saslname (RFC 5802 section 5.1): UTF-8 without NUL; `,` and `=` are escaped.
    if username.bytes().any(|b| b == 0) || authzid.unwrap_or("").bytes().any(|b| b == 0) {
        return Err(SaslError::InvalidCredential);
    }
    // The gs2 header and the binding data travel together in `c=`: refuse now what would
    // not fit then.
    let mut gs2 = [0u8; MAX_CBIND];
    let n = gs2_header(creds, &mut gs2)?;
    let data = match binding {
        Binding::Bound(cb) => cb.data.len(),
        _ => 0,
    };
    if n + data > MAX_CBIND {
        return Err(SaslError::InvalidCredential);
    }
    Ok(())
}

/// A printable nonce (RFC 5802: `%x21-2B / %x2D-7E`, i.e. printable ASCII without `,`).
#[cfg(feature = "scram")]
fn valid_nonce(nonce: &[u8]) -> bool {
    !nonce.is_empty()
        && nonce
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Writes the gs2 header (`n,,` / `y,,` / `p=tls-exporter,,`, with `a=authzid` between the
/// commas when given) into `buf`; returns its length.
#[cfg(feature = "scram")]
fn gs2_header(creds: &Credentials<'_>, buf: &mut [u8; MAX_CBIND]) -> Result<usize, SaslError> {
    let Credentials::Scram {
        authzid, binding, ..
    } = *creds
    else {
        return Err(SaslError::WrongCredentials);
    };
    let mut w = SliceWriter { buf, len: 0 };
    match binding {
        Binding::Unsupported => w.put(b"n")?,
        Binding::NotOffered => w.put(b"y")?,
        Binding::Bound(cb) => {
            w.put(b"p=")?;
            w.put(cb.kind.name().as_bytes())?;
        }
    }
    w.put(b",")?;
    if let Some(a) = authzid.filter(|a| !a.is_empty()) {
        w.put(b"a=")?;
        for &c in a.as_bytes() {
            match c {
                b',' => w.put(b"=2C")?,
                b'=' => w.put(b"=3D")?,
                _ => w.put(&[c])?,
            }
        }
    }
    w.put(b",")?;
    Ok(w.len)
}

#[cfg(feature = "scram")]
struct SliceWriter<'b> {
    buf: &'b mut [u8; MAX_CBIND],
    len: usize,
}

#[cfg(feature = "scram")]
impl SliceWriter<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), SaslError> {
        let end = self.len.saturating_add(bytes.len());
        let slot = self
            .buf
            .get_mut(self.len..end)
            .ok_or(SaslError::InvalidCredential)?;
        slot.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

/// The client-first-message-bare: `n=USER,r=NONCE`.
#[cfg(feature = "scram")]
fn client_first_bare<'a>(username: &'a str, nonce: &'a str) -> [Piece<'a>; 4] {
    [
        Piece::Raw(b"n="),
        Piece::SaslName(username.as_bytes()),
        Piece::Raw(b",r="),
        Piece::Raw(nonce.as_bytes()),
    ]
}

/// Writes `AUTH SCRAM-SHA-256[-PLUS] base64(client-first-message)`.
#[cfg(feature = "scram")]
pub(crate) fn client_first(
    mechanism: Mechanism,
    creds: &Credentials<'_>,
    out: &mut impl Buffer,
) -> Result<(), SaslError> {
    let Credentials::Scram {
        username, nonce, ..
    } = *creds
    else {
        return Err(SaslError::WrongCredentials);
    };
    let mut gs2 = [0u8; MAX_CBIND];
    let n = gs2_header(creds, &mut gs2)?;
    let [a, b, c, d] = client_first_bare(username, nonce);
    let payload = [Piece::Raw(gs2.get(..n).unwrap_or(&[])), a, b, c, d];
    write_encoded(
        out,
        &[b"AUTH ", mechanism.name().as_bytes(), b" "],
        &payload,
        b"=",
    )?;
    Ok(())
}

/// What the server-first message says.
#[cfg(feature = "scram")]
struct ServerFirst<'a> {
    nonce: &'a [u8],
    salt: &'a [u8],
    iterations: u32,
}

/// Why a server-first message is refused.
#[derive(Debug, PartialEq, Eq)]
#[cfg(feature = "scram")]
enum Refusal {
    /// `e=`: the server reports an error.
    ServerError,
    /// Anything malformed or hostile (bad nonce, salt, iteration count, `m=`).
    Malformed,
}

/// Parses `[m=...,]r=NONCE,s=SALT,i=COUNT[,ext...]`, checking the nonce against ours and
/// decoding the salt into `salt_buf`.
#[cfg(feature = "scram")]
fn parse_server_first<'a>(
    msg: &'a [u8],
    client_nonce: &[u8],
    salt_buf: &'a mut [u8; MAX_SALT],
) -> Result<ServerFirst<'a>, Refusal> {
    if msg.starts_with(b"e=") {
        return Err(Refusal::ServerError);
    }
    let mut attrs = msg.split(|&b| b == b',');
    let mut next = |key: &[u8]| -> Result<&'a [u8], Refusal> {
        let attr = attrs.next().ok_or(Refusal::Malformed)?;
        match attr.strip_prefix(key) {
            Some(v) => Ok(v),
            // `m=` (a mandatory extension this client cannot know) lands here too.
            None => Err(Refusal::Malformed),
        }
    };
    let nonce = next(b"r=")?;
    let salt_b64 = next(b"s=")?;
    let count = next(b"i=")?;
    // The server's nonce extends ours; a server that drops or changes our part could be
    // replaying an old exchange.
    if !nonce.starts_with(client_nonce) || nonce.len() <= client_nonce.len() || !valid_nonce(nonce)
    {
        return Err(Refusal::Malformed);
    }
    // As lenient about padding as challenges are (servers differ); what we send is canonical.
    let salt_len = super::LENIENT
        .decode_slice(salt_b64, &mut salt_buf[..])
        .map_err(|_| Refusal::Malformed)?;
    if salt_len == 0 {
        return Err(Refusal::Malformed);
    }
    let iterations = parse_count(count).ok_or(Refusal::Malformed)?;
    Ok(ServerFirst {
        nonce,
        salt: salt_buf.get(..salt_len).unwrap_or(&[]),
        iterations,
    })
}

/// A decimal iteration count in `1..=MAX_ITERATIONS`.
#[cfg(feature = "scram")]
fn parse_count(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 7 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    (1..=MAX_ITERATIONS).contains(&n).then_some(n)
}

#[cfg(feature = "scram")]
fn feed(mac: &mut HmacSha256, pieces: &[Piece<'_>]) {
    for piece in pieces {
        match *piece {
            Piece::Raw(b) => mac.update(b),
            Piece::SaslName(b) => {
                for &c in b {
                    match c {
                        b',' => mac.update(b"=2C"),
                        b'=' => mac.update(b"=3D"),
                        _ => mac.update(&[c]),
                    }
                }
            }
        }
    }
}

#[cfg(feature = "scram")]
fn hmac(key: &[u8], pieces: &[Piece<'_>]) -> [u8; 32] {
    // HMAC takes keys of any length; the fallback is unreachable.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    feed(&mut mac, pieces);
    mac.finalize().into_bytes().into()
}

/// Answers the server-first message with the client-final message. `Ok(Err(response))`
/// when the challenge was refused and `*` written instead.
#[cfg(feature = "scram")]
pub(crate) fn client_final(
    creds: &Credentials<'_>,
    challenge: &[u8],
    out: &mut impl Buffer,
) -> Result<Result<ServerProof, Response>, SaslError> {
    let Credentials::Scram {
        username,
        password,
        nonce,
        binding,
        ..
    } = *creds
    else {
        return Err(SaslError::WrongCredentials);
    };
    let mut decoded = [0u8; MAX_CHALLENGE];
    let mut salt = [0u8; MAX_SALT];
    let server_first = match decode_challenge(challenge, &mut decoded) {
        Some(msg) => parse_server_first(msg, nonce.as_bytes(), &mut salt).map(|sf| (msg, sf)),
        None => Err(Refusal::Malformed),
    };
    let (server_first_msg, sf) = match server_first {
        Ok(v) => v,
        Err(Refusal::ServerError) => {
            cancel(out)?;
            return Ok(Err(Response::ServerError));
        }
        Err(Refusal::Malformed) => return Ok(Err(cancel(out)?)),
    };

    // c= base64(gs2-header [channel binding data])
    let mut cbind = [0u8; MAX_CBIND];
    let mut len = gs2_header(creds, &mut cbind)?;
    if let Binding::Bound(cb) = binding {
        let end = len + cb.data.len();
        cbind
            .get_mut(len..end)
            .ok_or(SaslError::InvalidCredential)?
            .copy_from_slice(cb.data);
        len = end;
    }
    let mut cbind_b64 = [0u8; MAX_CBIND / 3 * 4 + 4];
    let cbind_b64 = super::encode_base64(cbind.get(..len).unwrap_or(&[]), &mut cbind_b64)
        .ok_or(SaslError::InvalidCredential)?;

    let [b0, b1, b2, b3] = client_first_bare(username, nonce);
    let auth_message = [
        b0,
        b1,
        b2,
        b3,
        Piece::Raw(b","),
        Piece::Raw(server_first_msg),
        Piece::Raw(b",c="),
        Piece::Raw(cbind_b64),
        Piece::Raw(b",r="),
        Piece::Raw(sf.nonce),
    ];

    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), sf.salt, sf.iterations, &mut salted);
    let mut client_key = hmac(&salted, &[Piece::Raw(b"Client Key")]);
    let mut stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let mut proof = hmac(&stored_key, &auth_message);
    for (p, k) in proof.iter_mut().zip(client_key.iter()) {
        *p ^= k;
    }
    let mut server_key = hmac(&salted, &[Piece::Raw(b"Server Key")]);
    let signature = hmac(&server_key, &auth_message);
    salted.zeroize();
    client_key.zeroize();
    stored_key.zeroize();
    server_key.zeroize();

    let mut proof_b64 = [0u8; 44];
    let proof_n = super::encode_base64(&proof, &mut proof_b64)
        .ok_or(SaslError::InvalidCredential)?
        .len();
    proof.zeroize();
    let written = write_encoded(
        out,
        &[],
        &[
            Piece::Raw(b"c="),
            Piece::Raw(cbind_b64),
            Piece::Raw(b",r="),
            Piece::Raw(sf.nonce),
            Piece::Raw(b",p="),
            Piece::Raw(proof_b64.get(..proof_n).unwrap_or(&[])),
        ],
        b"",
    );
    proof_b64.zeroize();
    written?;
    Ok(Ok(ServerProof {
        state: ProofState::Expected,
        signature,
    }))
}

/// Checks the server-final message: an empty line after the right `v=`, `*` otherwise.
#[cfg(feature = "scram")]
pub(crate) fn server_final(
    expected: &ServerProof,
    challenge: &[u8],
    out: &mut impl Buffer,
) -> Result<(Response, ServerProof), SaslError> {
    let mut decoded = [0u8; MAX_CHALLENGE];
    let msg = decode_challenge(challenge, &mut decoded).unwrap_or(&[]);
    let mut verdict = *expected;
    if expected.state != ProofState::Expected {
        return Ok((cancel(out)?, verdict));
    }
    if msg.starts_with(b"e=") {
        cancel(out)?;
        return Ok((Response::ServerError, verdict));
    }
    // `v=` is the whole message or followed by extensions.
    let v = msg
        .split(|&b| b == b',')
        .next()
        .and_then(|a| a.strip_prefix(b"v="));
    // Room for the decoder's estimate of a 44-character value; only 32 bytes are right.
    let mut sig = [0u8; 48];
    let good = match v.map(|v| STANDARD.decode_slice(v, &mut sig)) {
        Some(Ok(32)) => bool::from(sig[..32].ct_eq(&expected.signature[..])),
        _ => false,
    };
    if good {
        out.extend_from_slice(b"\r\n")?;
        verdict.state = ProofState::Verified;
        Ok((Response::Answered, verdict))
    } else {
        cancel(out)?;
        verdict.state = ProofState::Wrong;
        Ok((Response::ServerUnproven, verdict))
    }
}

#[cfg(all(test, feature = "scram"))]
mod tests {
    use super::super::{BindingKind, ChannelBinding, Sasl};
    use super::*;
    use crate::buf::{BufferFull, FixedBuf};
    use std::string::String;
    use std::vec::Vec;

    /// RFC 7677 section 3.
    const USER: Credentials<'static> = Credentials::Scram {
        authzid: None,
        username: "user",
        password: "pencil",
        nonce: "rOprNGfwEbeRWgbNEkqO",
        binding: Binding::Unsupported,
    };
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn b64(data: &[u8]) -> String {
        let mut enc = [0u8; 1024];
        let n = STANDARD.encode_slice(data, &mut enc).unwrap();
        String::from_utf8(enc[..n].to_vec()).unwrap()
    }

    fn unb64(line: &[u8]) -> Vec<u8> {
        let text = line.strip_suffix(b"\r\n").unwrap();
        let mut dec = [0u8; 1024];
        let n = STANDARD.decode_slice(text, &mut dec).unwrap();
        dec[..n].to_vec()
    }

    fn start(mech: Mechanism, creds: &Credentials<'_>) -> (Sasl, Vec<u8>) {
        let mut sasl = Sasl::new(mech, creds).unwrap();
        let mut out = Vec::new();
        sasl.start(creds, &mut out).unwrap();
        (sasl, out)
    }

    fn respond(sasl: &mut Sasl, creds: &Credentials<'_>, msg: &str) -> (Response, Vec<u8>) {
        let mut out = Vec::new();
        let r = sasl
            .respond(creds, b64(msg.as_bytes()).as_bytes(), &mut out)
            .unwrap();
        (r, out)
    }

    #[test]
    fn rfc7677_example() {
        let (mut sasl, line) = start(Mechanism::ScramSha256, &USER);
        assert_eq!(
            line,
            std::format!(
                "AUTH SCRAM-SHA-256 {}\r\n",
                b64(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
            )
            .as_bytes()
        );
        assert!(!sasl.server_proven());
        let (r, out) = respond(&mut sasl, &USER, SERVER_FIRST);
        assert_eq!(r, Response::Answered);
        assert_eq!(unb64(&out), CLIENT_FINAL.as_bytes());
        assert!(!sasl.server_proven());
        let (r, out) = respond(&mut sasl, &USER, SERVER_FINAL);
        assert_eq!((r, &out[..]), (Response::Answered, &b"\r\n"[..]));
        assert!(sasl.server_proven());
        assert!(!sasl.server_refuted());
        // The signature is not printed.
        let dbg = std::format!("{sasl:?}");
        assert!(dbg.contains("Verified") && !dbg.contains("234"), "{dbg}");
        // Nothing more is expected: a further challenge is cancelled, and a server that
        // goes on after that has proven nothing (a 235 then is no success).
        assert_eq!(respond(&mut sasl, &USER, "x").0, Response::Cancelled);
        assert!(!sasl.server_proven() && sasl.server_refuted());
    }

    #[test]
    fn wrong_server_signature_is_refuted() {
        for bad in [
            "v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=AAAA",
            "v=",
            "",
            "r=x",
        ] {
            let (mut sasl, _) = start(Mechanism::ScramSha256, &USER);
            respond(&mut sasl, &USER, SERVER_FIRST);
            let (r, out) = respond(&mut sasl, &USER, bad);
            assert_eq!(
                (r, &out[..]),
                (Response::ServerUnproven, &b"*\r\n"[..]),
                "{bad}"
            );
            assert!(!sasl.server_proven() && sasl.server_refuted());
        }
        // Not base64 at all.
        let (mut sasl, _) = start(Mechanism::ScramSha256, &USER);
        respond(&mut sasl, &USER, SERVER_FIRST);
        let mut out = Vec::new();
        let r = sasl.respond(&USER, b"%%%", &mut out).unwrap();
        assert_eq!(r, Response::ServerUnproven);
    }

    #[test]
    fn server_final_with_extension_is_accepted() {
        let (mut sasl, _) = start(Mechanism::ScramSha256, &USER);
        respond(&mut sasl, &USER, SERVER_FIRST);
        let msg = std::format!("{SERVER_FINAL},x=ext");
        assert_eq!(respond(&mut sasl, &USER, &msg).0, Response::Answered);
        assert!(sasl.server_proven());
    }

    #[test]
    fn server_errors_cancel() {
        let (mut sasl, _) = start(Mechanism::ScramSha256, &USER);
        let (r, out) = respond(&mut sasl, &USER, "e=unknown-user");
        assert_eq!((r, &out[..]), (Response::ServerError, &b"*\r\n"[..]));
        assert!(!sasl.server_proven() && !sasl.server_refuted());

        let (mut sasl, _) = start(Mechanism::ScramSha256, &USER);
        respond(&mut sasl, &USER, SERVER_FIRST);
        let (r, out) = respond(&mut sasl, &USER, "e=invalid-proof");
        assert_eq!((r, &out[..]), (Response::ServerError, &b"*\r\n"[..]));
        assert!(!sasl.server_proven() && !sasl.server_refuted());
    }

    #[test]
    fn hostile_server_first_is_cancelled() {
        let cases = [
            // Does not extend our nonce.
            "r=XOprNGfwEbeRWgbNEkqO%hvYD,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            // Only our nonce, nothing of the server's.
            "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            // Absurd, zero, negative, overflowing, missing counts.
            "r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000001",
            "r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4294967295",
            "r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999999999999",
            "r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
            "r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
            "r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=",
            "r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==",
            // Bad or empty salt.
            "r=rOprNGfwEbeRWgbNEkqOxx,s=%%%,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOxx,s=,i=4096",
            // A mandatory extension.
            "m=ext,r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            // Attributes out of order, or none.
            "s=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOxx,i=4096",
            "",
        ];
        for case in cases {
            let (mut sasl, _) = start(Mechanism::ScramSha256, &USER);
            let (r, out) = respond(&mut sasl, &USER, case);
            assert_eq!(
                (r, &out[..]),
                (Response::Cancelled, &b"*\r\n"[..]),
                "{case}"
            );
            // The exchange cannot be turned into a success afterwards.
            let (r, _) = respond(&mut sasl, &USER, SERVER_FINAL);
            assert_eq!(r, Response::Cancelled);
            assert!(!sasl.server_proven());
        }
        // The largest count allowed and trailing extensions are fine.
        assert_eq!(parse_count(b"1000000"), Some(MAX_ITERATIONS));
        assert_eq!(parse_count(b"0004096"), Some(4096));
        let (mut sasl, _) = start(Mechanism::ScramSha256, &USER);
        let msg = std::format!("{SERVER_FIRST},x=future");
        assert_eq!(respond(&mut sasl, &USER, &msg).0, Response::Answered);
    }

    #[test]
    fn gs2_headers_and_names() {
        let creds = Credentials::Scram {
            authzid: Some("ad,m=in"),
            username: "u,s=r",
            password: "p",
            nonce: "abc",
            binding: Binding::NotOffered,
        };
        let (_, line) = start(Mechanism::ScramSha256, &creds);
        let text = line.strip_prefix(b"AUTH SCRAM-SHA-256 ").unwrap();
        assert_eq!(unb64(text), b"y,a=ad=2Cm=3Din,n=u=2Cs=3Dr,r=abc");
    }

    fn bound(kind: BindingKind, data: &'static [u8]) -> Credentials<'static> {
        Credentials::Scram {
            authzid: None,
            username: "user",
            password: "pencil",
            nonce: "rOprNGfwEbeRWgbNEkqO",
            binding: Binding::Bound(ChannelBinding { kind, data }),
        }
    }

    #[test]
    fn channel_binding_encoding() {
        for (kind, header) in [
            (BindingKind::TlsExporter, &b"p=tls-exporter,,"[..]),
            (BindingKind::TlsServerEndPoint, b"p=tls-server-end-point,,"),
        ] {
            let data = &[0xA5u8; 32];
            let creds = bound(kind, data);
            let (mut sasl, line) = start(Mechanism::ScramSha256Plus, &creds);
            let text = line.strip_prefix(b"AUTH SCRAM-SHA-256-PLUS ").unwrap();
            let mut first = header.to_vec();
            first.extend_from_slice(b"n=user,r=rOprNGfwEbeRWgbNEkqO");
            assert_eq!(unb64(text), first);
            let (r, out) = respond(&mut sasl, &creds, SERVER_FIRST);
            assert_eq!(r, Response::Answered);
            let fin = String::from_utf8(unb64(&out)).unwrap();
            let mut cbind = header.to_vec();
            cbind.extend_from_slice(data);
            let c = std::format!("c={},", b64(&cbind));
            assert!(fin.starts_with(&c), "{fin}");
            // The binding is part of what the proof signs: it differs from the unbound one.
            assert_ne!(fin.as_bytes(), CLIENT_FINAL.as_bytes());
        }
    }

    #[test]
    fn binding_must_fit_the_mechanism() {
        let plus = bound(BindingKind::TlsExporter, &[1; 32]);
        assert_eq!(
            Sasl::new(Mechanism::ScramSha256, &plus),
            Err(SaslError::WrongCredentials)
        );
        for binding in [Binding::Unsupported, Binding::NotOffered] {
            let creds = Credentials::Scram {
                authzid: None,
                username: "u",
                password: "p",
                nonce: "n",
                binding,
            };
            assert_eq!(
                Sasl::new(Mechanism::ScramSha256Plus, &creds),
                Err(SaslError::WrongCredentials)
            );
        }
        for data in [&[][..], &[0u8; MAX_BINDING + 1][..]] {
            let creds = Credentials::Scram {
                authzid: None,
                username: "u",
                password: "p",
                nonce: "n",
                binding: Binding::Bound(ChannelBinding {
                    kind: BindingKind::TlsExporter,
                    data,
                }),
            };
            assert_eq!(
                Sasl::new(Mechanism::ScramSha256Plus, &creds),
                Err(SaslError::InvalidCredential)
            );
        }
    }

    #[test]
    fn invalid_nonces_and_names() {
        let with = |username, nonce, authzid| Credentials::Scram {
            authzid,
            username,
            password: "p",
            nonce,
            binding: Binding::Unsupported,
        };
        for creds in [
            with("u", "", None),
            with("u", "a,b", None),
            with("u", "a b", None),
            with("u", "a\r\n", None),
            with("u", "caf\u{e9}", None),
            with("u\0", "n", None),
            with("u", "n", Some("a\0")),
        ] {
            assert_eq!(
                Sasl::new(Mechanism::ScramSha256, &creds),
                Err(SaslError::InvalidCredential),
                "{creds:?}"
            );
        }
        // A very long authzid does not fit the gs2 buffer: refused, not truncated.
        let long = "x".repeat(MAX_CBIND);
        assert_eq!(
            Sasl::new(Mechanism::ScramSha256, &with("u", "n", Some(&long))),
            Err(SaslError::InvalidCredential)
        );
        // Other credential kinds do not fit SCRAM, nor SCRAM credentials other mechanisms.
        let pw = Credentials::Password {
            authzid: None,
            username: "u",
            password: "p",
        };
        assert_eq!(
            Sasl::new(Mechanism::ScramSha256, &pw),
            Err(SaslError::WrongCredentials)
        );
        assert_eq!(
            Sasl::new(Mechanism::Plain, &USER),
            Err(SaslError::WrongCredentials)
        );
    }

    #[test]
    fn small_buffer_is_left_untouched() {
        let (mut sasl, full) = start(Mechanism::ScramSha256, &USER);
        let mut storage = [0u8; 256];
        let mut out = FixedBuf::new(&mut storage[..full.len() + 1]);
        out.extend_from_slice(b"xx").unwrap();
        match sasl.start(&USER, &mut out) {
            Err(SaslError::BufferFull(BufferFull { needed: 1 })) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(out.as_bytes(), b"xx");

        // The client-final message: nothing written, the step kept, the retry identical.
        let (mut sasl, _) = start(Mechanism::ScramSha256, &USER);
        let challenge = b64(SERVER_FIRST.as_bytes());
        let mut storage = [0u8; 40];
        let mut out = FixedBuf::new(&mut storage);
        assert!(matches!(
            sasl.respond(&USER, challenge.as_bytes(), &mut out),
            Err(SaslError::BufferFull(_))
        ));
        assert!(out.is_empty());
        let (r, out) = respond(&mut sasl, &USER, SERVER_FIRST);
        assert_eq!(r, Response::Answered);
        assert_eq!(unb64(&out), CLIENT_FINAL.as_bytes());

        // The empty line after `v=`, and the `*` after a wrong one.
        let mut storage = [0u8; 1];
        let mut out = FixedBuf::new(&mut storage);
        let v = b64(SERVER_FINAL.as_bytes());
        assert!(sasl.respond(&USER, v.as_bytes(), &mut out).is_err());
        assert!(!sasl.server_proven());
        assert!(sasl.respond(&USER, b"dj1BQUFB", &mut out).is_err());
        assert!(!sasl.server_refuted());
        assert_eq!(
            respond(&mut sasl, &USER, SERVER_FINAL).0,
            Response::Answered
        );
        assert!(sasl.server_proven());
    }

    #[test]
    fn restart_forgets_the_proof() {
        let (mut sasl, _) = start(Mechanism::ScramSha256, &USER);
        respond(&mut sasl, &USER, SERVER_FIRST);
        respond(&mut sasl, &USER, SERVER_FINAL);
        assert!(sasl.server_proven());
        sasl.start(&USER, &mut Vec::new()).unwrap();
        assert!(!sasl.server_proven());
    }

    #[test]
    fn external() {
        let none = Credentials::External { authzid: None };
        let (mut sasl, line) = start(Mechanism::External, &none);
        assert_eq!(line, b"AUTH EXTERNAL =\r\n");
        assert!(sasl.server_proven());
        let mut out = Vec::new();
        assert_eq!(sasl.respond(&none, b"", &mut out), Ok(Response::Answered));
        assert_eq!(out, b"\r\n");
        out.clear();
        assert_eq!(sasl.respond(&none, b"", &mut out), Ok(Response::Cancelled));

        let admin = Credentials::External {
            authzid: Some("admin"),
        };
        let (mut sasl, line) = start(Mechanism::External, &admin);
        assert_eq!(line, b"AUTH EXTERNAL YWRtaW4=\r\n");
        // A non-empty challenge makes no sense for EXTERNAL.
        let mut out = Vec::new();
        assert_eq!(
            sasl.respond(&admin, b"eA==", &mut out),
            Ok(Response::Cancelled)
        );
        assert_eq!(
            Sasl::new(
                Mechanism::External,
                &Credentials::External {
                    authzid: Some("a\r\n")
                }
            ),
            Err(SaslError::InvalidCredential)
        );
        assert_eq!(
            Sasl::new(Mechanism::External, &USER),
            Err(SaslError::WrongCredentials)
        );
        assert_eq!(
            Sasl::new(Mechanism::Plain, &none),
            Err(SaslError::WrongCredentials)
        );
    }

    #[test]
    fn names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name().as_bytes()), Some(m));
        }
        assert_eq!(
            Mechanism::from_name(b"scram-sha-256-plus"),
            Some(Mechanism::ScramSha256Plus)
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let s = std::format!("{USER:?}");
        assert!(s.contains("user") && !s.contains("pencil"), "{s}");
    }
}
