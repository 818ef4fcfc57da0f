//! What authenticating costs the client, per connection: SCRAM-SHA-256 is PBKDF2 over the
//! password with the server's iteration count (4096 here, RFC 7677's minimum and Dovecot's
//! default) plus a few HMACs, against PLAIN's base64 in the same run.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use postline_proto::sasl::{Binding, Credentials, Mechanism, Sasl};

/// RFC 7677 section 3.
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn bench(c: &mut Criterion) {
    let scram = Credentials::Scram {
        authzid: None,
        username: "user",
        password: "pencil",
        nonce: "rOprNGfwEbeRWgbNEkqO",
        binding: Binding::Unsupported,
    };
    let plain = Credentials::Password {
        authzid: None,
        username: "user",
        password: "pencil",
    };
    let first = STANDARD.encode(SERVER_FIRST);
    let last = STANDARD.encode(SERVER_FINAL);
    let mut g = c.benchmark_group("sasl");
    g.bench_function("scram_sha_256_4096_iterations", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(256);
            let mut s = Sasl::new(Mechanism::ScramSha256, &scram).unwrap();
            s.start(&scram, &mut out).unwrap();
            s.respond(&scram, black_box(first.as_bytes()), &mut out)
                .unwrap();
            s.respond(&scram, black_box(last.as_bytes()), &mut out)
                .unwrap();
            assert!(s.server_proven());
            black_box(out.len())
        })
    });
    g.bench_function("plain", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(64);
            let mut s = Sasl::new(Mechanism::Plain, &plain).unwrap();
            s.start(black_box(&plain), &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
