//! Support code for postline's integration tests: a throwaway CA ([`TestCa`]) with client
//! certificates ([`ClientCert`]), a self-signed certificate made by openssl ([`SelfSigned`]), the
//! real aiosmtpd server from `tests/interop/aiosmtpd_server.py` ([`Aiosmtpd`]), Postfix's
//! `smtp-sink` ([`SmtpSink`]), the microsocks SOCKS5 proxy ([`Microsocks`]), a private real Postfix ([`Postfix`]) and Dovecot ([`Dovecot`]: SASL
//! for Postfix, its submission service with SASL EXTERNAL, and LMTP into Maildirs), a scripted SMTP peer over real TCP ([`ScriptedServer`]), dnsmasq and
//! aiosmtpd exchangers for MX routing ([`Dnsmasq`], [`Exchanger`]), and a [`Sandbox`] in which
//! to run the `postline` binary, with a [`SendCmd`] builder for `postline send`.
//!
//! A dev-dependency of the crates whose tests use it; not published. Everything listens on
//! 127.0.0.x only, and every wait is bounded in time. The real servers need `.ci/install-deps`
//! to have run (postfix, dnsmasq, and the venv at `tests/interop/.venv`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};

mod aiosmtpd;
mod ca;
mod dkim;
mod dns;
mod dovecot;
mod microsocks;
mod mx;
mod output;
mod postfix;
mod postgres;
mod process;
mod sandbox;
mod scripted;
mod send_cmd;
mod setups;
mod smtp_sink;
mod tmpfs;

pub use aiosmtpd::{Aiosmtpd, AiosmtpdBuilder, Sessions, StoredMessage, AIOSMTPD_READY_TIMEOUT};
pub use ca::{ClientCert, SelfSigned, TestCa};
pub use dkim::{openssl, DkimKey};
pub use dns::{free_udp_port, Dnsmasq, FailingDns};
pub use dovecot::{Dovecot, DovecotBuilder, DOVECOT_READY_TIMEOUT};
pub use microsocks::{Microsocks, SilentListener, MICROSOCKS_OUTGOING, MICROSOCKS_READY_TIMEOUT};
pub use mx::{busy_server, shared_port, shared_port_among, Exchanger};
pub use output::{expect_code, run_code, stderr, stdout};
pub use postfix::{Postfix, PostfixBuilder, TlsLevel, POSTFIX_READY_TIMEOUT};
pub use postgres::{Postgres, POSTGRES_READY_TIMEOUT};
pub use sandbox::{Sandbox, DEFAULT_RUN_TIMEOUT};
pub use scripted::{
    greeting_and_ehlo, lmtp_two_recipients, ScriptReport, ScriptedServer, Step, HANG_TIMEOUT,
    SCRIPT_FINISH_GRACE, SCRIPT_FINISH_TIMEOUT, SCRIPT_IO_TIMEOUT,
};
pub use send_cmd::SendCmd;
pub use setups::{ExternalSubmission, SaslRelay};
pub use smtp_sink::{SmtpSink, SINK_READY_TIMEOUT};
pub use tmpfs::{fill, Tmpfs};

/// The repository's root: two levels above this crate's manifest (`crates/testkit`).
pub fn repo_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released: another process may take it
/// before the caller does, so callers that bind should retry).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Lossy UTF-8 for messages.
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `#[test]`s running the case `$name(driver)` on the blocking and on the tokio client: a
/// module `$name` with the tests `blocking` and `tokio`. The calling file defines an enum
/// `Driver` with the variants `Blocking` and `Tokio`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn blocking() {
                super::$name(super::Driver::Blocking)
            }
            #[test]
            fn tokio() {
                super::$name(super::Driver::Tokio)
            }
        }
    };
}
