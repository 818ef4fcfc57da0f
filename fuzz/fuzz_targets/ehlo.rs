//! Whatever an EHLO reply holds, reading capabilities from it must not panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use postline_proto::reply::ReplyParser;
use postline_proto::Capabilities;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while let Ok(Some((reply, n))) = ReplyParser::new().parse(&data[at..]) {
        let caps = Capabilities::from_ehlo(&reply);
        let _ = (caps.size(), caps.auth().iter().count());
        assert!(caps.unknown.len() <= 64);
        at += n;
    }
});
