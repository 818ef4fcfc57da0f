//! What the rig's tests share.

#![allow(dead_code)]

/// 1 MiB of lines, every other one starting with a dot (some with two).
pub fn dotted_body() -> Vec<u8> {
    let mut body = Vec::new();
    let mut i = 0;
    while body.len() < 1 << 20 {
        let line = match i % 4 {
            0 => format!(".line {i} starts with a dot\r\n"),
            1 => format!("line {i} does not.\r\n"),
            2 => format!("..line {i} starts with two\r\n"),
            _ => format!("line {i} {}\r\n", "x".repeat(i % 97)),
        };
        body.extend_from_slice(line.as_bytes());
        i += 1;
    }
    body
}

/// RFC 5321 4.5.2: a line starting with a dot gets one more.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 16);
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out
}
