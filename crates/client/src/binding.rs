//! TLS channel binding for SCRAM-SHA-256-PLUS: the data that ties an AUTH exchange to the
//! TLS connection it runs over, so that a man in the middle who terminates TLS with its own
//! certificate cannot relay the exchange.
//!
//! - TLS 1.3: `tls-exporter` (RFC 9266), 32 bytes of the TLS exporter with the label
//!   `EXPORTER-Channel-Binding` and a zero-length context.
//! - TLS 1.2: `tls-server-end-point` (RFC 5929 section 4.1), the hash of the server's
//!   end-entity certificate with the hash function of its signature algorithm, SHA-256
//!   when that is MD5 or SHA-1. (`tls-unique` is not offered: without the extended master
//!   secret it is not unique, RFC 7627.)
//!
//! Computed once when the handshake completes and kept in [`TlsInfo::channel_binding`].

use std::fmt;

use postline_proto::sasl::{BindingKind, ChannelBinding};
use ring::digest;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::signature_algorithm::SignatureAlgorithm;

use crate::tls::TlsInfo;

/// The RFC 9266 exporter label.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// Channel binding data of a TLS connection, owned.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelBindingData {
    /// `tls-exporter` or `tls-server-end-point`.
    pub kind: BindingKind,
    /// The binding bytes.
    pub data: Vec<u8>,
}

impl ChannelBindingData {
    /// The borrowed form the SCRAM exchange takes.
    pub fn as_binding(&self) -> ChannelBinding<'_> {
        ChannelBinding {
            kind: self.kind,
            data: &self.data,
        }
    }

    /// The binding for a finished handshake: `tls-exporter` under TLS 1.3,
    /// `tls-server-end-point` under TLS 1.2; `None` while handshaking, or when the
    /// certificate's signature algorithm has no defined hash (Ed25519, for one).
    pub fn from_connection(conn: &rustls::ClientConnection) -> Option<Self> {
        if conn.is_handshaking() {
            return None;
        }
        match conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => {
                let data = conn
                    .export_keying_material([0u8; 32], EXPORTER_LABEL, Some(&[]))
                    .ok()?;
                Some(ChannelBindingData {
                    kind: BindingKind::TlsExporter,
                    data: data.to_vec(),
                })
            }
            rustls::ProtocolVersion::TLSv1_2 => {
                let cert = conn.peer_certificates()?.first()?;
                Some(ChannelBindingData {
                    kind: BindingKind::TlsServerEndPoint,
                    data: server_end_point(cert.as_ref())?,
                })
            }
            _ => None,
        }
    }
}

impl fmt::Debug for ChannelBindingData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ChannelBindingData {{ kind: {}, {} bytes }}",
            self.kind.name(),
            self.data.len()
        )
    }
}

/// RFC 5929 section 4.1: the certificate's hash with its signature's hash algorithm, MD5 and
/// SHA-1 replaced by SHA-256. `None` for a certificate that does not parse or an algorithm
/// without a hash this client knows.
pub fn server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let alg = &cert.signature_algorithm;
    let oid = match SignatureAlgorithm::try_from(alg) {
        Ok(SignatureAlgorithm::RSASSA_PSS(params)) => params.hash_algorithm_oid().to_id_string(),
        _ => alg.algorithm.to_id_string(),
    };
    let hash = match oid.as_str() {
        // md5WithRSAEncryption, sha1WithRSAEncryption, ecdsa-with-SHA1, dsa-with-sha1,
        // and the bare SHA-1 and MD5 (RSASSA-PSS parameters): SHA-256 instead.
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.10045.4.1"
        | "1.2.840.10040.4.3"
        | "1.3.14.3.2.26"
        | "1.2.840.113549.2.5"
        // sha256WithRSAEncryption, ecdsa-with-SHA256, dsa-with-sha256, SHA-256
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.3.2"
        | "2.16.840.1.101.3.4.3.2"
        | "2.16.840.1.101.3.4.2.1" => &digest::SHA256,
        // sha384WithRSAEncryption, ecdsa-with-SHA384, SHA-384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" | "2.16.840.1.101.3.4.2.2" => {
            &digest::SHA384
        }
        // sha512WithRSAEncryption, ecdsa-with-SHA512, SHA-512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" | "2.16.840.1.101.3.4.2.3" => {
            &digest::SHA512
        }
        _ => return None,
    };
    Some(digest::digest(hash, cert_der).as_ref().to_vec())
}

impl TlsInfo {
    /// What a rustls client connection negotiated, channel binding included (for a custom
    /// driver's [`crate::Engine::handle_tls_established`]; the built-in drivers use it).
    /// [`TlsInfo::from_connection`] cannot compute the binding: the exporter needs the
    /// connection, not only its common state.
    pub fn from_client_connection(conn: &rustls::ClientConnection) -> Self {
        let mut info = TlsInfo::from_connection(conn);
        info.channel_binding = ChannelBindingData::from_connection(conn);
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn end_point_hash_follows_the_signature_algorithm() {
        let p256 = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            server_end_point(&p256).unwrap(),
            digest::digest(&digest::SHA256, &p256).as_ref()
        );
        let p384 = cert(&rcgen::PKCS_ECDSA_P384_SHA384);
        let hash = server_end_point(&p384).unwrap();
        assert_eq!(hash.len(), 48);
        assert_eq!(hash, digest::digest(&digest::SHA384, &p384).as_ref());
        // Ed25519 has no hash of its own: RFC 5929 defines no binding for it.
        assert_eq!(server_end_point(&cert(&rcgen::PKCS_ED25519)), None);
        assert_eq!(server_end_point(b"not a certificate"), None);
    }

    #[test]
    fn debug_shows_no_bytes() {
        let cb = ChannelBindingData {
            kind: BindingKind::TlsExporter,
            data: vec![0xAB; 32],
        };
        let s = format!("{cb:?}");
        assert_eq!(s, "ChannelBindingData { kind: tls-exporter, 32 bytes }");
        assert_eq!(cb.as_binding().data, &[0xAB; 32][..]);
    }
}
