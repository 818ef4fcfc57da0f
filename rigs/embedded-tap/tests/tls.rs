//! STARTTLS and implicit TLS with embedded-tls on a real no_std TCP/IP stack: embassy-net
//! (smoltcp) on the TAP, aiosmtpd on the kernel side with a P-256 certificate from a
//! throwaway CA. AUTH over TLS without the clear-text allowance, a refused recipient, the
//! server seeing TLS; a certificate from another CA refused before anything is sent.

use std::time::Duration;

use postline_embedded::tls::{Mode, Tls, Verify};
use postline_embedded::{Address, Client, Config, Error, TlsFailure};
use postline_embedded_tap::{Clock, Rig};
use rand_core::OsRng;

mod common;
use common::Certs;

const USER: &str = "device";
const PASSWORD: &str = "s3cret-pw";
const NAME: &str = "mail.test";

struct TapClock;

impl postline_embedded::Clock for TapClock {
    fn now_ms(&self) -> u64 {
        Clock.now_ms()
    }
    async fn wait_until(&self, deadline_ms: u64) {
        Clock.wait_until(deadline_ms).await
    }
}

fn addr(a: &'static str) -> Address<&'static str> {
    Address::new(a).unwrap()
}

/// One session over the TAP: TLS in `mode` verified against `ca`, AUTH, one message to two
/// recipients; the codes, or the first error.
fn session(mode: Mode, ca: &[u8], server_args: &[&str]) -> (Result<[u16; 2], String>, String) {
    let mut rig = Rig::new().expect("the namespace and its TAP");
    let auth = format!("{USER}:{PASSWORD}");
    let mut args = vec!["--auth", &auth, "--reject-rcpt", "nobody"];
    args.extend_from_slice(server_args);
    let server = rig.aiosmtpd(&args).expect("aiosmtpd in the namespace");
    let port = server.port();
    let ca = ca.to_vec();
    let result = rig.run(async |net| {
        let (mut rx, mut tx) = ([0u8; 4096], [0u8; 4096]);
        let socket = net.connect(port, &mut rx, &mut tx).await.expect("connect");
        let (mut out, mut input) = ([0u8; 512], [0u8; 512]);
        let (mut rrec, mut wrec) = (vec![0u8; 16_640], vec![0u8; 16_640]);
        let mut rng = OsRng;
        let config = Config::new("device.example")
            .credentials(USER, PASSWORD)
            .timeout_ms(10_000);
        let mut client = Client::new(socket, TapClock, config, &mut out, &mut input)
            .unwrap()
            .tls(Tls {
                mode,
                server_name: NAME,
                verify: Verify::Ca(&ca),
                read_record: &mut rrec,
                write_record: &mut wrec,
                rng: &mut rng,
            })
            .unwrap();
        client.connect().await.map_err(|e| format!("{e:?}"))?;
        let to = [addr("ops@example.com"), addr("nobody@example.com")];
        let mut codes = [0u16; 2];
        let status = client
            .send(
                addr("device@example.com"),
                &to,
                b"Subject: TLS over the TAP\r\n\r\n.dot line\r\n",
                &mut codes,
            )
            .await
            .map_err(|e| format!("{e:?}"))?;
        assert!(status.delivered, "{status:?}");
        client.quit().await.map_err(|e| format!("{e:?}"))?;
        Ok(codes)
    });
    let stored = match &result {
        Ok(_) => server
            .envelope(1, Duration::from_secs(10))
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    assert_eq!(result.is_ok(), server.count() == 1);
    (result, stored)
}

#[test]
fn starttls_on_a_no_std_stack() {
    let certs = Certs::new("ca", NAME);
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    let (result, envelope) = session(Mode::StartTls, &certs.ca_der, &["--starttls", cert, key]);
    assert_eq!(result.unwrap(), [250, 550]);
    let meta: serde_json::Value = serde_json::from_str(&envelope).unwrap();
    assert_eq!(meta["tls"], true, "{meta}");
    assert_eq!(meta["auth_user"], USER);
    assert_eq!(meta["peer"], "192.168.69.2");
    assert_eq!(meta["rcpt_tos"], serde_json::json!(["ops@example.com"]));
}

#[test]
fn implicit_tls_on_a_no_std_stack() {
    let certs = Certs::new("ca", NAME);
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    let (result, envelope) = session(
        Mode::Implicit,
        &certs.ca_der,
        &["--implicit-tls", cert, key],
    );
    assert_eq!(result.unwrap(), [250, 550]);
    let meta: serde_json::Value = serde_json::from_str(&envelope).unwrap();
    assert_eq!(meta["auth_user"], USER);
}

#[test]
fn a_certificate_from_another_ca_sends_nothing() {
    let certs = Certs::new("ca", NAME);
    let other = Certs::new("other-ca", NAME);
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    let (result, _) = session(Mode::StartTls, &other.ca_der, &["--starttls", cert, key]);
    let err = result.unwrap_err();
    assert_eq!(
        err,
        format!("{:?}", Error::<()>::Tls(TlsFailure::Certificate)),
        "{err}"
    );
}
