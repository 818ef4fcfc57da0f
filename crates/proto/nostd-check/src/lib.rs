//! Proof that postline-proto needs nothing from `std`: this `#![no_std]` static library uses
//! the core's parsers, encoder and session and brings its own panic handler. If any dependency
//! pulled in `std`, its panic handler would clash with this one and the build would fail.
#![no_std]

use core::panic::PanicInfo;

use postline_proto::command::Domain;
use postline_proto::{Buffer, DataEncoder, FixedBuf, Outbox, ReplyParser, Session, SessionConfig};

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}

/// Parses one reply and returns its code, or 0.
///
/// # Safety
/// `input` must point to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn postline_reply_code(input: *const u8, len: usize) -> u16 {
    if input.is_null() {
        return 0;
    }
    let input = unsafe { core::slice::from_raw_parts(input, len) };
    match ReplyParser::new().parse(input) {
        Ok(Some((reply, _))) => reply.code().value(),
        _ => 0,
    }
}

/// Dot-stuffs `input` into `out` and returns how many bytes were written, or 0.
///
/// # Safety
/// `input` must point to `len` readable bytes and `out` to `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn postline_encode(
    input: *const u8,
    len: usize,
    out: *mut u8,
    cap: usize,
) -> usize {
    if input.is_null() || out.is_null() {
        return 0;
    }
    let (input, out) = unsafe {
        (
            core::slice::from_raw_parts(input, len),
            core::slice::from_raw_parts_mut(out, cap),
        )
    };
    let mut buf = FixedBuf::new(out);
    let mut enc = DataEncoder::new();
    if enc.encode(input, &mut buf).is_err() || enc.finish(&mut buf).is_err() {
        return 0;
    }
    buf.len()
}

/// Feeds a greeting to a new session and returns how many bytes of EHLO it wrote, or 0.
#[no_mangle]
pub extern "C" fn postline_greet() -> usize {
    let Ok(name) = Domain::new("device.local") else {
        return 0;
    };
    let mut session = Session::new(SessionConfig::new(&name));
    let mut storage = [0u8; 128];
    let mut out = Outbox::new(FixedBuf::new(&mut storage));
    match session.handle_input(b"220 mx ESMTP\r\n", &mut out) {
        Ok(_) => out.transmit().len(),
        Err(_) => 0,
    }
}
