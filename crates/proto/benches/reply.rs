//! The cost of reading a server's EHLO reply and its capabilities: paid once per connection,
//! so it matters most for bulk sending over many short connections.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use postline_proto::reply::ReplyParser;
use postline_proto::Capabilities;

/// A Postfix-like 12-line EHLO reply.
const EHLO: &[u8] = b"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n\
250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("reply");
    g.throughput(Throughput::Bytes(EHLO.len() as u64));
    g.bench_function("parse_ehlo_12_lines", |b| {
        b.iter(|| {
            let mut p = ReplyParser::new();
            let (reply, n) = p.parse(black_box(EHLO)).unwrap().unwrap();
            black_box((reply.line_count(), n))
        })
    });
    g.bench_function("parse_ehlo_byte_at_a_time", |b| {
        b.iter(|| {
            let mut p = ReplyParser::new();
            let input = black_box(EHLO);
            for end in 1..input.len() {
                black_box(p.parse(&input[..end]).unwrap());
            }
            black_box(p.parse(input).unwrap().unwrap().1)
        })
    });
    let (reply, _) = ReplyParser::new().parse(EHLO).unwrap().unwrap();
    assert_eq!(reply.line_count(), 12);
    g.bench_function("capabilities_from_ehlo", |b| {
        b.iter(|| black_box(Capabilities::from_ehlo(black_box(&reply))))
    });
    g.bench_function("parse_and_capabilities", |b| {
        b.iter(|| {
            let (reply, _) = ReplyParser::new().parse(black_box(EHLO)).unwrap().unwrap();
            black_box(Capabilities::from_ehlo(&reply))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
