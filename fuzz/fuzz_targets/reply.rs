//! Arbitrary server bytes must give a reply or an error, never a panic, and the same answer
//! however the bytes are split across reads.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postline_proto::reply::ReplyParser;

fuzz_target!(|data: &[u8]| {
    // The first bytes choose the read sizes; the rest is the stream.
    let (sizes, input) = data.split_at(data.len().min(4));
    let mut at = 0;
    let mut chunked = ReplyParser::new();
    loop {
        let rest = &input[at..];
        let one = ReplyParser::new().parse(rest);
        // Feed `rest` in growing prefixes, steps cycling through `sizes`.
        let mut end = 0;
        let mut step = 0;
        let got = loop {
            let r = chunked.parse(&rest[..end]);
            if !matches!(r, Ok(None)) || end == rest.len() {
                break r;
            }
            let s = sizes.get(step % sizes.len().max(1)).copied().unwrap_or(1);
            end = (end + usize::from(s % 16) + 1).min(rest.len());
            step += 1;
        };
        assert_eq!(got, one);
        match one {
            Ok(Some((reply, n))) => {
                assert!(n > 0 && n <= rest.len());
                assert_eq!(reply.raw(), &rest[..n]);
                assert_eq!(reply.lines().count(), reply.line_count());
                for _ in reply.text_lines() {}
                at += n;
            }
            Ok(None) => {
                let _ = chunked.finish(rest);
                break;
            }
            Err(e) => {
                // Sticky until reset.
                assert_eq!(chunked.parse(rest), Err(e));
                break;
            }
        }
    }
});
