//! The DATA encoder under arbitrary input and chunking: no terminator before the end, the
//! server gets the CRLF-normalised message back, and chunking never changes the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postline_proto::DataEncoder;

/// Encodes `chunks`, checking each size prediction against what was written.
fn encode(mut enc: DataEncoder, chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        let before = out.len();
        let predicted = enc.encoded_len(c);
        enc.encode(c, &mut out).unwrap();
        assert_eq!(out.len() - before, predicted);
    }
    let before = out.len();
    let predicted = enc.finish_len();
    enc.finish(&mut out).unwrap();
    assert_eq!(out.len() - before, predicted);
    out
}

/// Every CR, LF and CRLF becomes one CRLF; a last line without an end gets one.
fn normalise(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A server after 354: CRLF lines up to `.CRLF`, one leading dot stripped; returns the
/// message and how many bytes it read.
fn unstuff(wire: &[u8]) -> (Vec<u8>, usize) {
    let mut msg = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &wire[pos..];
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("terminator");
        let line = &rest[..end];
        pos += end + 2;
        if line == b"." {
            return (msg, pos);
        }
        msg.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        msg.extend_from_slice(b"\r\n");
    }
}

fuzz_target!(|data: &[u8]| {
    // Layout: [n][n chunk lengths][message]; the lengths are used cyclically, a zero length
    // is an empty `encode` call. The remainder goes in one last chunk once the number of calls
    // is past any useful count, so all-zero lengths still end.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8).min(rest.len());
    let (lens, input) = rest.split_at(n);
    let mut chunks = Vec::new();
    let mut pos = 0;
    while pos < input.len() && chunks.len() <= 2 * input.len() {
        let len = lens
            .get(chunks.len() % n.max(1))
            .map_or(input.len(), |&l| usize::from(l));
        let end = (pos + len).min(input.len());
        chunks.push(&input[pos..end]);
        pos = end;
    }
    chunks.push(&input[pos..]);

    let wire = encode(DataEncoder::new(), &chunks);
    assert_eq!(wire, encode(DataEncoder::new(), &[input]));
    assert!(wire.len() <= DataEncoder::max_encoded_len(input.len()));
    let (msg, used) = unstuff(&wire);
    assert_eq!(used, wire.len(), "terminator before the end");
    assert_eq!(msg, normalise(input));
    if input.is_empty() {
        assert_eq!(wire, b".\r\n");
    } else {
        assert!(wire.ends_with(b"\r\n.\r\n"));
    }

    let bdat = encode(DataEncoder::bdat(), &chunks);
    assert_eq!(bdat, encode(DataEncoder::bdat(), &[input]));
    assert_eq!(bdat, normalise(input));
});
