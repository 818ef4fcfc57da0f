//! Properties of the reply parser: it never panics, how the input is split never changes the
//! result, and well-formed replies come back as they were written.

use postline_proto::reply::{EnhancedCode, Reply, ReplyError, ReplyParser};
use proptest::prelude::*;

type Parsed<'a> = Result<Option<(Reply<'a>, usize)>, ReplyError>;
/// A reply as owned values: code, line texts, bytes taken.
type Owned = (u16, Vec<Vec<u8>>, usize);

/// Feeds `input` growing through the given cut points, as reads from a socket would arrive.
fn chunked<'a>(input: &'a [u8], cuts: &[usize]) -> Parsed<'a> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut p = ReplyParser::new();
    for &c in &cuts {
        match p.parse(&input[..c]) {
            Ok(None) => {}
            other => return other,
        }
    }
    p.parse(input)
}

/// Every reply in `input`, one after the other, then how it ended.
fn all_replies(input: &[u8], cuts: &[usize]) -> (Vec<Owned>, Parsed<'static>) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        match chunked(&input[at..], cuts) {
            Ok(Some((r, n))) => {
                assert!(n > 0 && n <= input.len() - at);
                assert_eq!(r.raw().len(), n);
                assert_eq!(r.lines().count(), r.line_count());
                out.push((r.code().value(), r.lines().map(<[u8]>::to_vec).collect(), n));
                at += n;
            }
            Ok(None) => return (out, Ok(None)),
            Err(e) => return (out, Err(e)),
        }
    }
}

/// Bytes that look like replies often enough to reach the interesting states.
fn replyish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"250".to_vec()),
        Just(b"550".to_vec()),
        Just(b"-".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"5.1.1 ".to_vec()),
        Just(b"2.0.0".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
        proptest::collection::vec(b'0'..=b'9', 1..4),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_chunked_equals_one_shot(
        input in proptest::collection::vec(any::<u8>(), 0..300),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let one = ReplyParser::new().parse(&input);
        prop_assert_eq!(chunked(&input, &cuts), one);
        let _ = ReplyParser::new().finish(&input);
    }

    #[test]
    fn replyish_chunked_equals_one_shot(
        input in replyish(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let (a, end_a) = all_replies(&input, &[]);
        let (b, end_b) = all_replies(&input, &cuts);
        prop_assert_eq!(a, b);
        prop_assert_eq!(end_a.map(|_| ()), end_b.map(|_| ()));
    }

    #[test]
    fn byte_at_a_time_equals_one_shot(input in replyish()) {
        let cuts: Vec<usize> = (0..input.len()).collect();
        prop_assert_eq!(chunked(&input, &cuts), ReplyParser::new().parse(&input));
    }

    #[test]
    fn valid_replies_round_trip(
        code in (2u16..=5, 0u16..=5, 0u16..=9).prop_map(|(a, b, c)| a * 100 + b * 10 + c),
        texts in proptest::collection::vec(
            proptest::collection::vec(any::<u8>().prop_filter("no line end", |b| *b != b'\r' && *b != b'\n'), 0..80),
            1..30,
        ),
        bare_lf in proptest::collection::vec(any::<bool>(), 30),
        trailing in proptest::collection::vec(any::<u8>(), 0..20),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut input = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let last = i + 1 == texts.len();
            input.extend_from_slice(code.to_string().as_bytes());
            // A last line with no text may be the bare code.
            if !(last && t.is_empty() && bare_lf[i]) {
                input.push(if last { b' ' } else { b'-' });
            }
            input.extend_from_slice(t);
            input.extend_from_slice(if bare_lf[i] { b"\n" } else { b"\r\n" });
        }
        let len = input.len();
        input.extend_from_slice(&trailing);

        let (reply, n) = ReplyParser::new().parse(&input).unwrap().unwrap();
        prop_assert_eq!(n, len);
        prop_assert_eq!(reply.code().value(), code);
        prop_assert_eq!(reply.line_count(), texts.len());
        let got: Vec<&[u8]> = reply.lines().collect();
        let want: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(got, want);
        let enhanced = EnhancedCode::parse_prefix(&texts[0])
            .map(|(e, _)| e)
            .filter(|e| u16::from(e.class) == code / 100);
        prop_assert_eq!(reply.enhanced(), enhanced);
        prop_assert_eq!(chunked(&input, &cuts), Ok(Some((reply, n))));
    }

    #[test]
    fn enhanced_code_round_trips(
        class in prop_oneof![Just(2u8), Just(4), Just(5)],
        subject in 0u16..1000,
        detail in 0u16..1000,
    ) {
        let input = format!("{class}{}0 {class}.{subject}.{detail} text\r\n", 5);
        let reply = Reply::parse_complete(input.as_bytes()).unwrap();
        prop_assert_eq!(reply.enhanced(), Some(EnhancedCode { class, subject, detail }));
        let first = reply.text_lines().next().unwrap();
        prop_assert_eq!(first, &b"text"[..]);
    }
}
