//! MIME parts: text bodies, attachments and inline parts, encoded by mail-builder.

use std::path::Path;

use mail_builder::encoders::base64::base64_encode_mime;
use mail_builder::headers::content_type::ContentType;
use mail_builder::mime::{BodyPart, MimePart};

use super::ready::crlf_line_endings;
use super::MessageError;

/// A text/plain or text/html part with CRLF line endings; base64 when the text holds
/// control characters that mail-builder would otherwise pass through unencoded.
pub(crate) fn text(ctype: &'static str, text: &str) -> MimePart<'static> {
    let text = match String::from_utf8(crlf_line_endings(text.as_bytes().to_vec())) {
        Ok(t) => t,
        // Only ASCII CR and LF were touched, so the text is still UTF-8.
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    let ct = ContentType::new(ctype).attribute("charset", "utf-8");
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n' | '\x0c'))
    {
        base64(ct, text.as_bytes())
    } else {
        MimePart::new(ct, BodyPart::Text(text.into()))
    }
}

/// A part whose content mail-builder's base64 encoder has already encoded.
fn base64(ct: ContentType<'static>, data: &[u8]) -> MimePart<'static> {
    let mut encoded = Vec::with_capacity(data.len() / 3 * 4 + data.len() / 57 * 2 + 8);
    // Writing to a Vec cannot fail.
    let _ = base64_encode_mime(data, &mut encoded, false);
    if !encoded.ends_with(b"\n") {
        encoded.extend_from_slice(b"\r\n");
    }
    // base64 output is ASCII.
    let encoded = String::from_utf8_lossy(&encoded).into_owned();
    MimePart::new(ct, BodyPart::Text(encoded.into())).transfer_encoding("base64")
}

/// A content type as the caller gave it (`application/pdf`, `text/plain; charset=latin1`),
/// checked: `part` names the part for the error.
pub(crate) fn content_type(part: &str, ct: &str) -> Result<mime::Mime, MessageError> {
    let m: mime::Mime = ct.trim().parse().map_err(|e| {
        MessageError::part(
            part,
            format!("content type {ct:?} is not type/subtype: {e}"),
        )
    })?;
    if m.subtype().as_str().is_empty() || m.type_().as_str().is_empty() {
        return Err(MessageError::part(
            part,
            format!("content type {ct:?} is not type/subtype"),
        ));
    }
    if m.type_() == mime::MULTIPART || m.type_() == mime::MESSAGE {
        return Err(MessageError::part(
            part,
            format!(
                "content type {ct:?}: a {} part is made by the builder, not given as bytes",
                m.type_()
            ),
        ));
    }
    Ok(m)
}

/// The content type of a file, guessed from its name as most mail clients do;
/// `application/octet-stream` when the extension says nothing.
pub(crate) fn guess(path: &Path) -> mime::Mime {
    mime_guess::from_path(path).first_or_octet_stream()
}

/// A part holding `data` exactly: text types get a UTF-8 charset when they are UTF-8 and not
/// ASCII, and base64 when they are not UTF-8 or hold bare CRs or control characters (so the
/// bytes round-trip); other types are base64 (mail-builder's choice for binary).
pub(crate) fn bytes(ct: &mime::Mime, name: Option<&str>, data: Vec<u8>) -> MimePart<'static> {
    let essence = ct.essence_str().to_string();
    let mut t = ContentType::new(essence);
    let is_text = ct.type_() == mime::TEXT;
    let given_charset = ct.get_param(mime::CHARSET).is_some();
    for (k, v) in ct.params() {
        if k != "name" {
            t = t.attribute(k.as_str().to_string(), v.as_str().to_string());
        }
    }
    let mut force_base64 = false;
    if is_text {
        match std::str::from_utf8(&data) {
            Ok(s) if !s.is_ascii() && !given_charset => t = t.attribute("charset", "utf-8"),
            Ok(_) => {}
            Err(_) => force_base64 = true,
        }
        // mail-builder would pass bare CRs and other control characters through.
        force_base64 |= data.iter().enumerate().any(|(i, &b)| {
            (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c))
                || b == 0x7f
                || (b == b'\r' && data.get(i + 1) != Some(&b'\n'))
        });
    }
    if let Some(name) = name {
        t = t.attribute("name", name.to_string());
    }
    if force_base64 {
        base64(t, &data)
    } else {
        MimePart::new(t, BodyPart::Binary(data.into()))
    }
}

/// A file name fit for a header parameter: control characters become `_`.
pub(crate) fn filename(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect()
}

/// Reads a file to attach: its name, guessed type and contents.
pub(crate) fn read_file(path: &Path) -> Result<(String, mime::Mime, Vec<u8>), MessageError> {
    let data = std::fs::read(path).map_err(|source| MessageError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "attachment".to_string());
    Ok((name, guess(path), data))
}
