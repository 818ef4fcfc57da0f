//! A queued message's metadata: its envelope, each recipient's state, its route and schedule.

use serde::{Deserialize, Deserializer, Serialize};

use crate::route::{Route, RouteTls, Secret, ROUTE_VERSION};

/// Where one recipient stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum RecipientStatus {
    /// To be tried (again).
    Pending {
        /// The last attempt's reason, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_error: Option<String>,
        /// The last attempt ended in doubt: the server may already have the message, so the
        /// next delivery may be a duplicate.
        #[serde(default, skip_serializing_if = "is_false")]
        in_doubt: bool,
    },
    /// Accepted by a server.
    Delivered {
        /// When (Unix seconds).
        at: u64,
        /// What the server said.
        reply: String,
    },
    /// Failed for good (a 5xx about the message or recipient, or the message expired).
    Failed {
        /// When (Unix seconds).
        at: u64,
        /// Why, quoting the server.
        reason: String,
    },
    /// In doubt and held by policy: not retried until someone releases it.
    Held {
        /// When (Unix seconds).
        at: u64,
        /// What left it in doubt.
        reason: String,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl RecipientStatus {
    /// The name used in listings: `pending`, `delivered`, `failed`, `held`.
    pub fn name(&self) -> &'static str {
        match self {
            RecipientStatus::Pending { .. } => "pending",
            RecipientStatus::Delivered { .. } => "delivered",
            RecipientStatus::Failed { .. } => "failed",
            RecipientStatus::Held { .. } => "held",
        }
    }

    /// The reply, reason or last error.
    pub fn detail(&self) -> &str {
        match self {
            RecipientStatus::Pending { last_error, .. } => last_error.as_deref().unwrap_or(""),
            RecipientStatus::Delivered { reply, .. } => reply,
            RecipientStatus::Failed { reason, .. } | RecipientStatus::Held { reason, .. } => reason,
        }
    }
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address.
    pub address: String,
    /// Its state.
    #[serde(flatten)]
    pub status: RecipientStatus,
}

/// A queued message's metadata (`<id>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The id (file stem).
    pub id: String,
    /// Envelope sender (empty: the null sender).
    pub from: String,
    /// Recipients and their states.
    pub recipients: Vec<Recipient>,
    /// How to send it (never a secret, never a command).
    #[serde(deserialize_with = "route_any_version")]
    pub route: Route,
    /// Size of `<id>.eml`, to tell a truncated file.
    pub size: u64,
    /// When queued (Unix seconds).
    pub created: u64,
    /// Attempts so far.
    pub attempts: u32,
    /// Earliest next attempt (Unix seconds).
    pub next_attempt: u64,
    /// The last attempt's reason, if any.
    #[serde(default)]
    pub last_error: Option<String>,
    /// A bounce report (never bounced itself).
    #[serde(default)]
    pub is_bounce: bool,
    /// DSN parameters (RFC 3461) the message is sent with, when the sender asked for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsn: Option<Dsn>,
}

/// A queued message's DSN parameters (RFC 3461): applied to every attempt's envelope, and
/// sent only to a server that offers DSN (as for a message sent straight away).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dsn {
    /// `RET=`: what a bounce returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<DsnRet>,
    /// `ENVID=`, before xtext encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// `NOTIFY=` on every recipient: `[never]`, or some of `success`, `failure`, `delay`;
    /// empty when not given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifyOn>,
    /// `ORCPT=` naming each recipient.
    #[serde(default, skip_serializing_if = "is_false")]
    pub orcpt: bool,
}

/// `RET=` as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DsnRet {
    /// `RET=FULL`.
    Full,
    /// `RET=HDRS`.
    Hdrs,
}

/// One keyword of `NOTIFY=` as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// `NEVER` (alone).
    Never,
    /// `SUCCESS`.
    Success,
    /// `FAILURE`.
    Failure,
    /// `DELAY`.
    Delay,
}

impl Dsn {
    /// The DSN parameters of `envelope`, or `None` when it has none.
    pub fn of(envelope: &postline::Envelope) -> Option<Dsn> {
        if !envelope.has_dsn() {
            return None;
        }
        let notify = match envelope.notify() {
            None => Vec::new(),
            Some(postline::Notify::Never) => vec![NotifyOn::Never],
            Some(postline::Notify::On {
                success,
                failure,
                delay,
            }) => [
                (success, NotifyOn::Success),
                (failure, NotifyOn::Failure),
                (delay, NotifyOn::Delay),
            ]
            .into_iter()
            .filter_map(|(on, k)| on.then_some(k))
            .collect(),
        };
        Some(Dsn {
            ret: envelope.ret().map(|r| match r {
                postline::Ret::Full => DsnRet::Full,
                postline::Ret::Headers => DsnRet::Hdrs,
            }),
            envid: envelope.envid().map(str::to_string),
            notify,
            orcpt: envelope.orcpt(),
        })
    }

    /// `NOTIFY=` as the client takes it. `never` wins over anything stored beside it (a
    /// hand-edited entry): the quieter reading.
    pub fn notify(&self) -> Option<postline::Notify> {
        if self.notify.is_empty() {
            return None;
        }
        if self.notify.contains(&NotifyOn::Never) {
            return Some(postline::Notify::Never);
        }
        Some(postline::Notify::On {
            success: self.notify.contains(&NotifyOn::Success),
            failure: self.notify.contains(&NotifyOn::Failure),
            delay: self.notify.contains(&NotifyOn::Delay),
        })
    }

    /// Whether the sender wants to hear of a failure: true unless NOTIFY was given without
    /// FAILURE (RFC 3461 4.1). The queue's own bounces follow it.
    pub fn wants_failure_report(&self) -> bool {
        self.notify.is_empty() || self.notify.contains(&NotifyOn::Failure)
    }

    /// `envelope` with these parameters.
    pub fn apply(&self, mut envelope: postline::Envelope) -> postline::Envelope {
        if let Some(ret) = self.ret {
            envelope = envelope.dsn_ret(match ret {
                DsnRet::Full => postline::Ret::Full,
                DsnRet::Hdrs => postline::Ret::Headers,
            });
        }
        if let Some(envid) = &self.envid {
            envelope = envelope.dsn_envid(envid.clone());
        }
        if let Some(notify) = self.notify() {
            envelope = envelope.dsn_notify(notify);
        }
        envelope.dsn_orcpt(self.orcpt)
    }

    /// `envelope` with `dsn` applied when there is one: what every path that sends a
    /// message with its stored (or asked-for) parameters does.
    pub fn apply_to(dsn: Option<&Dsn>, envelope: postline::Envelope) -> postline::Envelope {
        match dsn {
            Some(d) => d.apply(envelope),
            None => envelope,
        }
    }
}

impl Entry {
    /// A fresh entry (not yet queued) with a new id (the queueing time first, so ids sort
    /// oldest first, then randomness) and every recipient pending now.
    pub fn fresh(
        from: &str,
        recipients: &[String],
        route: &Route,
        message: &[u8],
        now: std::time::SystemTime,
    ) -> Entry {
        let t = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let id = format!(
            "{:x}-{:08x}-{:x}",
            t.as_secs(),
            t.subsec_nanos(),
            crate::policy::random() & 0xffff_ffff
        );
        Entry {
            id,
            from: from.to_string(),
            recipients: recipients
                .iter()
                .map(|a| Recipient {
                    address: a.clone(),
                    status: RecipientStatus::Pending {
                        last_error: None,
                        in_doubt: false,
                    },
                })
                .collect(),
            route: route.clone(),
            size: message.len() as u64,
            created: t.as_secs(),
            attempts: 0,
            next_attempt: t.as_secs(),
            last_error: None,
            is_bounce: false,
            dsn: None,
        }
    }

    /// Recipients still to be tried.
    pub fn pending(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients
            .iter()
            .filter(|r| matches!(r.status, RecipientStatus::Pending { .. }))
    }

    /// Recipients that failed for good.
    pub fn failed(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients
            .iter()
            .filter(|r| matches!(r.status, RecipientStatus::Failed { .. }))
    }

    /// Recipients held in doubt.
    pub fn held(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients
            .iter()
            .filter(|r| matches!(r.status, RecipientStatus::Held { .. }))
    }

    /// True when nothing is left to do: every recipient delivered or failed.
    pub fn is_finished(&self) -> bool {
        self.recipients.iter().all(|r| {
            matches!(
                r.status,
                RecipientStatus::Delivered { .. } | RecipientStatus::Failed { .. }
            )
        })
    }
}

/// Reads the current route format, or the first one (the command line's flags stored as they
/// were), keeping only what a route may hold now: commands are dropped, so such a message
/// is sent with its account's or environment's credentials, or not at all.
fn route_any_version<'de, D: Deserializer<'de>>(d: D) -> Result<Route, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Any {
        Current(Route),
        First(FirstRoute),
    }
    Ok(match Any::deserialize(d)? {
        Any::Current(r) => r,
        Any::First(f) => f.into_route(),
    })
}

/// The first stored route: `{"server": {flags...}, "direct": bool, "from": ...}`.
#[derive(Deserialize)]
struct FirstRoute {
    server: FirstFlags,
    #[serde(default)]
    direct: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FirstFlags {
    server: Option<String>,
    account: Option<String>,
    dns_server: Option<std::net::SocketAddr>,
    mx_port: Option<u16>,
    tls: Option<RouteTls>,
    ca_file: Option<std::path::PathBuf>,
    insecure: bool,
    helo: Option<String>,
    timeout: Option<f64>,
    allow_plaintext_auth: bool,
    user: Option<String>,
    password_env: Option<String>,
    password_file: Option<std::path::PathBuf>,
    oauth_token_env: Option<String>,
    auth: Option<String>,
}

impl FirstRoute {
    fn into_route(self) -> Route {
        let f = self.server;
        let secret = f
            .password_env
            .map(Secret::PasswordEnv)
            .or(f.password_file.map(Secret::PasswordFile))
            .or(f.oauth_token_env.map(Secret::OauthTokenEnv));
        Route {
            version: ROUTE_VERSION,
            account: f.account,
            server: f.server,
            direct: self.direct,
            tls: f.tls,
            ca_file: f.ca_file,
            insecure: f.insecure,
            helo: f.helo,
            // Out-of-range numbers are dropped, not carried into a Duration.
            timeout_ms: f
                .timeout
                .filter(|t| t.is_finite() && *t > 0.0 && *t <= 86_400.0)
                .map(|t| (t * 1000.0) as u64),
            allow_plaintext_auth: f.allow_plaintext_auth,
            user: f.user,
            secret,
            allow_readable_secret_file: false,
            auth: f.auth,
            dns_server: f.dns_server,
            mx_port: f.mx_port,
            ..Route::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_parameters_round_trip_through_an_entry() {
        let env = postline::Envelope::new("a@x.example", ["b@y.example"])
            .unwrap()
            .dsn_ret(postline::Ret::Headers)
            .dsn_envid("Q+1=2")
            .dsn_notify(postline::Notify::On {
                success: true,
                failure: true,
                delay: false,
            });
        let dsn = Dsn::of(&env).unwrap();
        let text = serde_json::to_string(&dsn).unwrap();
        assert_eq!(
            text,
            r#"{"ret":"hdrs","envid":"Q+1=2","notify":["success","failure"]}"#
        );
        let back: Dsn = serde_json::from_str(&text).unwrap();
        let again = back.apply(postline::Envelope::new("a@x.example", ["b@y.example"]).unwrap());
        assert_eq!(again, env);
        assert!(back.wants_failure_report());
        let never: Dsn = serde_json::from_str(r#"{"notify":["never"]}"#).unwrap();
        assert_eq!(never.notify(), Some(postline::Notify::Never));
        assert!(!never.wants_failure_report());
        assert_eq!(
            Dsn::of(&postline::Envelope::new("", ["b@y"]).unwrap()),
            None
        );
    }

    #[test]
    fn a_first_format_entry_loses_its_commands_and_absurd_numbers() {
        let json = r#"{"id":"a-1","from":"a@x","recipients":[{"address":"b@y","state":"pending"}],
            "route":{"server":{"server":"mail.example.com:587","user":"me",
            "password_cmd":"touch /tmp/pwned","timeout":1e20,"tls":"starttls"},"direct":false,"from":"a@x"},
            "size":1,"created":1,"attempts":0,"next_attempt":1}"#;
        let e: Entry = serde_json::from_str(json).unwrap();
        assert_eq!(e.route.server.as_deref(), Some("mail.example.com:587"));
        assert_eq!(e.route.secret, None);
        assert_eq!(e.route.timeout_ms, None);
        assert_eq!(e.route.tls, Some(RouteTls::Starttls));
        assert!(e.route.validate().is_ok());
    }
}
