//! Properties of the DATA / BDAT encoder against reference implementations written the slow,
//! obvious way: a byte-at-a-time CRLF normaliser and a server-side line reader that un-stuffs.

use postline_proto::{Buffer, BufferFull, DataEncoder, FixedBuf};
use proptest::prelude::*;

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

/// What an RFC 5321 server does after 354: reads CRLF lines up to `.CRLF`, strips one leading
/// dot. Returns the message and the number of bytes consumed, or `None` without a terminator.
fn unstuff(wire: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut msg = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &wire[pos..];
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = &rest[..end];
        pos += end + 2;
        if line == b"." {
            return Some((msg, pos));
        }
        msg.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        msg.extend_from_slice(b"\r\n");
    }
}

/// No CR without LF after it, no LF without CR before it.
fn only_crlf(wire: &[u8]) -> bool {
    wire.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => wire.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && wire[i - 1] == b'\r',
        _ => true,
    })
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Cuts `input` at the given points (taken modulo its length, sorted; empty chunks allowed).
fn split<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for p in points {
        chunks.push(&input[start..p]);
        start = p;
    }
    chunks.push(&input[start..]);
    chunks
}

/// Encodes chunk by chunk into a `Vec`, checking every size prediction on the way.
fn encode(mut enc: DataEncoder, chunks: &[&[u8]]) -> Result<Vec<u8>, TestCaseError> {
    let mut out = Vec::new();
    for c in chunks {
        let before = out.len();
        let predicted = enc.encoded_len(c);
        enc.encode(c, &mut out).unwrap();
        prop_assert_eq!(out.len() - before, predicted);
        prop_assert!(predicted <= DataEncoder::max_encoded_len(c.len()));
    }
    let before = out.len();
    let predicted = enc.finish_len();
    enc.finish(&mut out).unwrap();
    prop_assert_eq!(out.len() - before, predicted);
    Ok(out)
}

/// Bytes biased towards the ones the encoder cares about, plus long clean stretches (lines of
/// text with CRLF) so the block-skipping fast path is exercised and left at every offset.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => Just(b"\r".to_vec()),
        3 => Just(b"\n".to_vec()),
        3 => Just(b".".to_vec()),
        3 => Just(b"\r\n".to_vec()),
        2 => (0usize..150).prop_map(|n| vec![b'a'; n]),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..10)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn data_round_trips(input in message(), cuts in cuts()) {
        let chunks = split(&input, &cuts);
        let wire = encode(DataEncoder::new(), &chunks)?;
        // (c) chunking does not matter.
        prop_assert_eq!(&wire, &encode(DataEncoder::new(), &[&input])?);
        // (e) the advertised bound holds for the whole message.
        prop_assert!(wire.len() <= DataEncoder::max_encoded_len(input.len()));
        prop_assert!(only_crlf(&wire));
        // (a) a server gets the normalised message back and stops exactly at the end.
        let (msg, used) = unstuff(&wire).ok_or_else(|| TestCaseError::fail("no terminator"))?;
        prop_assert_eq!(used, wire.len());
        prop_assert_eq!(msg, normalise(&input));
        // (b) exactly one terminator, at the very end.
        if input.is_empty() {
            prop_assert_eq!(&wire[..], b".\r\n");
        } else {
            prop_assert_eq!(count(&wire, b"\r\n.\r\n"), 1);
            prop_assert!(wire.ends_with(b"\r\n.\r\n"));
            prop_assert!(!wire.starts_with(b".\r\n"));
        }
    }

    #[test]
    fn bdat_is_normalised_input(input in message(), cuts in cuts()) {
        let chunks = split(&input, &cuts);
        let wire = encode(DataEncoder::bdat(), &chunks)?;
        prop_assert_eq!(&wire, &encode(DataEncoder::bdat(), &[&input])?);
        prop_assert!(wire.len() <= DataEncoder::max_encoded_len(input.len()));
        prop_assert_eq!(wire, normalise(&input));
    }

    /// A fixed buffer either takes a chunk whole or is left untouched, encoder state included.
    #[test]
    fn encode_is_atomic(input in message(), cuts in cuts(), cap in 0usize..400, bdat: bool) {
        let fresh = if bdat { DataEncoder::bdat() } else { DataEncoder::new() };
        let mut enc = fresh;
        let mut storage = vec![0u8; cap];
        let mut out = FixedBuf::new(&mut storage);
        let mut written = Vec::new();
        for c in split(&input, &cuts) {
            let before = enc;
            let len = out.len();
            let need = enc.encoded_len(c);
            match enc.encode(c, &mut out) {
                Ok(()) => prop_assert_eq!(out.len() - len, need),
                Err(BufferFull { needed }) => {
                    prop_assert_eq!(needed, need - (cap - len));
                    prop_assert_eq!(out.len(), len);
                    prop_assert_eq!(enc, before);
                    // The caller flushes and retries.
                    written.extend_from_slice(out.as_bytes());
                    out.clear();
                    if enc.encode(c, &mut out).is_err() {
                        prop_assert!(need > cap);
                        return Ok(());
                    }
                }
            }
        }
        written.extend_from_slice(out.as_bytes());
        let mut finished = Vec::new();
        enc.finish(&mut finished).unwrap();
        written.extend_from_slice(&finished);
        prop_assert_eq!(written, encode(fresh, &[&input])?);
    }
}
