//! Proof that postline-proto needs nothing from `std`: this `#![no_std]` static library uses
//! the core's parsers and encoders and brings its own panic handler. If any dependency pulled
//! in `std`, its panic handler would clash with this one and the build would fail.
#![no_std]

use core::panic::PanicInfo;

use postline_proto::{Buffer, Code, DataEncoder, FixedBuf, ReplyParser};

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}

/// Parses one reply from `input` and returns its code, or 0.
#[no_mangle]
pub extern "C" fn postline_reply_code(input: *const u8, len: usize) -> u16 {
    let input = if input.is_null() { &[][..] } else { unsafe { core::slice::from_raw_parts(input, len) } };
    match ReplyParser::new().parse(input) {
        Ok(Some((reply, _))) => reply.code().value(),
        _ => Code::new(0).map_or(0, Code::value),
    }
}

/// Dot-stuffs `input` into `out` and returns how many bytes were written, or 0.
#[no_mangle]
pub extern "C" fn postline_encode(input: *const u8, len: usize, out: *mut u8, cap: usize) -> usize {
    let (input, out) = unsafe {
        (core::slice::from_raw_parts(input, len), core::slice::from_raw_parts_mut(out, cap))
    };
    let mut buf = FixedBuf::new(out);
    let mut enc = DataEncoder::new();
    if enc.encode(input, &mut buf).is_err() || enc.finish(&mut buf).is_err() {
        return 0;
    }
    buf.len()
}
