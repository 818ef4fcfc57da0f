//! CRLF line endings, by the one rule the DATA encoder applies on the wire (bare CR and bare
//! LF become CRLF), for the places that need the bytes in that form before sending: a ready
//! message read in, a body composed, a message about to be DKIM-signed.

use std::borrow::Cow;

use postline_proto::data::DataEncoder;

/// `raw` with bare CR and bare LF made CRLF (the BDAT form of the encoder: no dot-stuffing,
/// which the server undoes). Borrowed, not copied, when nothing needs changing.
pub(crate) fn crlf(raw: &[u8]) -> Cow<'_, [u8]> {
    let mut encoder = DataEncoder::bdat();
    let len = encoder.encoded_len(raw);
    if len == raw.len() {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(len);
    // A Vec grows: encoding into it cannot run out of room.
    let _ = encoder.encode(raw, &mut out);
    Cow::Owned(out)
}

/// `message` as the server receives it: [`crlf`], and a final CRLF added when missing, as
/// the encoder's `finish` does.
#[cfg_attr(not(feature = "dkim"), allow(dead_code))]
pub(crate) fn as_sent(message: &[u8]) -> Cow<'_, [u8]> {
    let mut out = crlf(message);
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.to_mut().extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_endings_become_crlf_and_clean_text_is_borrowed() {
        assert!(matches!(crlf(b"a\r\nb\r\n"), Cow::Borrowed(_)));
        assert!(matches!(as_sent(b""), Cow::Borrowed(_)));
        assert_eq!(&*crlf(b"a\nb\rc\r\n\n"), b"a\r\nb\r\nc\r\n\r\n");
        assert_eq!(&*crlf(b"end\r"), b"end\r\n");
        assert_eq!(&*crlf(b"no final"), b"no final");
        assert_eq!(&*as_sent(b"no final"), b"no final\r\n");
        assert_eq!(&*as_sent(b".dot\n"), b".dot\r\n", "no dot-stuffing");
    }
}
