//! DATA encoder throughput next to a plain copy of the same bytes, the speed it should approach.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use postline_proto::DataEncoder;

const SIZE: usize = 1 << 20;

/// ~70-character lines of text, each ended by `eol`, starting with `.` every `dot_every` lines.
fn text(eol: &[u8], dot_every: Option<usize>) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "lazy",
        "dog",
        "message",
        "postline",
        "transparency",
        "Subject:",
        "meeting",
        "board",
        "of",
        "directors",
        "Tuesday",
    ];
    let mut out = Vec::with_capacity(SIZE + 128);
    let mut w = 0usize;
    let mut line = 0usize;
    while out.len() < SIZE {
        let start = out.len();
        if dot_every.is_some_and(|n| line.is_multiple_of(n)) {
            out.push(b'.');
        }
        while out.len() - start < 66 {
            out.extend_from_slice(WORDS[w % WORDS.len()].as_bytes());
            out.push(b' ');
            w = w.wrapping_mul(7).wrapping_add(3) % 1009;
        }
        out.extend_from_slice(eol);
        line += 1;
    }
    out.truncate(SIZE);
    out
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("clean_crlf", text(b"\r\n", None)),
        ("dot_lines", text(b"\r\n", Some(2))),
        ("bare_lf", text(b"\n", None)),
    ];
    let mut out = Vec::with_capacity(DataEncoder::max_encoded_len(SIZE));
    for (name, input) in &cases {
        let mut g = c.benchmark_group(*name);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                let mut enc = DataEncoder::new();
                enc.encode(black_box(input), &mut out).unwrap();
                enc.finish(&mut out).unwrap();
                black_box(out.len())
            })
        });
        g.bench_function("memcpy", |b| {
            let mut dst = vec![0u8; input.len()];
            b.iter(|| {
                dst.copy_from_slice(black_box(input));
                black_box(dst.as_ptr());
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
