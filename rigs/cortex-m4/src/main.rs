//! One `postline_send_mail` on a Cortex-M4, its stack painted and read back: the RAM half of
//! the embedded budget on the architecture NetX Duo's figures are from. The server is a
//! scripted SMTP peer behind the C API's socket callbacks, in memory (its bytes are the
//! replies a real server sends; the TCP/IP stack is not part of what is measured). Four
//! mails, as bench/embedded-budget sends them on x86_64: no AUTH, AUTH PLAIN, AUTH LOGIN (a
//! challenge answered), and a subject in RFC 2047 words with no time of day. Prints one
//! line per mail (`stack NAME BYTES result R`) and `state BYTES`, then exits through
//! semihosting: 0 when every mail was delivered.
#![no_std]
#![no_main]

use core::ffi::{c_char, c_void};
use core::ptr::{addr_of, addr_of_mut};

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};

// The C API as include/postline.h declares it (the library is the one a device links).

#[repr(C)]
struct postline_config {
    hello: *const c_char,
    user: *const c_char,
    password: *const c_char,
    allow_plaintext_auth: u8,
    timeout_ms: u32,
}

#[repr(C)]
struct postline_io {
    ctx: *mut c_void,
    connect: Option<unsafe extern "C" fn(*mut c_void) -> i32>,
    send: Option<unsafe extern "C" fn(*mut c_void, *const u8, usize) -> i32>,
    recv: Option<unsafe extern "C" fn(*mut c_void, *mut u8, usize) -> i32>,
    close: Option<unsafe extern "C" fn(*mut c_void)>,
    now_ms: Option<unsafe extern "C" fn(*mut c_void) -> u64>,
    unix_time: Option<unsafe extern "C" fn(*mut c_void) -> i64>,
}

#[repr(C)]
struct postline_status {
    result: i32,
    code: u16,
    text: [c_char; 65],
}

/// Opaque.
#[repr(C)]
struct postline_client {
    _private: [u8; 0],
}

const POSTLINE_IO_AGAIN: i32 = -11;
const POSTLINE_PRIORITY_HIGH: u32 = 1;
const POSTLINE_RESULT_OK: i32 = 0;

extern "C" {
    fn postline_client_size() -> usize;
    fn postline_client_create(
        mem: *mut c_void,
        mem_len: usize,
        config: *const postline_config,
        io: *const postline_io,
    ) -> *mut postline_client;
    #[allow(clippy::too_many_arguments)]
    fn postline_send_mail(
        client: *mut postline_client,
        from: *const c_char,
        to: *const *const c_char,
        to_count: usize,
        priority: u32,
        subject: *const c_char,
        body: *const u8,
        body_len: usize,
        codes: *mut u16,
        status: *mut postline_status,
    ) -> i32;
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

/// What the scripted server offers and how the mail is made.
#[derive(Clone, Copy, PartialEq)]
enum Run {
    Sending,
    Plain,
    Login,
    Composing,
}

/// The scripted server: the client's current line, the replies not yet read.
struct Server {
    run: Run,
    line: [u8; 1024],
    line_len: usize,
    reply: [u8; 256],
    reply_len: usize,
    reply_pos: usize,
    in_data: bool,
    /// AUTH LOGIN: 1 = the user name is due, 2 = the password.
    login: u8,
    delivered: u32,
    ticks: u64,
}

static mut SERVER: Server = Server {
    run: Run::Sending,
    line: [0; 1024],
    line_len: 0,
    reply: [0; 256],
    reply_len: 0,
    reply_pos: 0,
    in_data: false,
    login: 0,
    delivered: 0,
    ticks: 0,
};

impl Server {
    fn say(&mut self, text: &[u8]) {
        let end = self.reply_len + text.len();
        self.reply[self.reply_len..end].copy_from_slice(text);
        self.reply_len = end;
    }

    fn on_line(&mut self) {
        // The start of the line decides (a verb, or the end of data): copied, so the
        // callback's frame stays small (it is part of what is measured).
        let mut head = [0u8; 12];
        let n = self.line_len.min(head.len());
        head[..n].copy_from_slice(&self.line[..n]);
        let line = &head[..n];
        let whole = self.line_len;
        self.line_len = 0;
        if self.in_data {
            if whole == 3 && line == b".\r\n" {
                self.in_data = false;
                self.delivered += 1;
                self.say(b"250 2.0.0 queued\r\n");
            }
            return;
        }
        match self.login {
            1 => {
                self.login = 2;
                return self.say(b"334 UGFzc3dvcmQ6\r\n");
            }
            2 => {
                self.login = 0;
                return self.say(b"235 2.7.0 ok\r\n");
            }
            _ => {}
        }
        let verb = |v: &[u8]| line.len() >= v.len() && line[..v.len()].eq_ignore_ascii_case(v);
        if verb(b"EHLO") {
            self.say(b"250-m4.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n");
            match self.run {
                Run::Plain => self.say(b"250 AUTH PLAIN LOGIN\r\n"),
                Run::Login => self.say(b"250 AUTH LOGIN\r\n"),
                _ => self.say(b"250 SIZE 10240000\r\n"),
            }
        } else if verb(b"AUTH PLAIN") {
            self.say(b"235 2.7.0 ok\r\n");
        } else if verb(b"AUTH LOGIN ") {
            // The user name came with the command.
            self.login = 2;
            self.say(b"334 UGFzc3dvcmQ6\r\n");
        } else if verb(b"AUTH LOGIN") {
            self.login = 1;
            self.say(b"334 VXNlcm5hbWU6\r\n");
        } else if verb(b"MAIL") || verb(b"RCPT") || verb(b"RSET") {
            self.say(b"250 2.1.0 ok\r\n");
        } else if verb(b"DATA") {
            self.in_data = true;
            self.say(b"354 go ahead\r\n");
        } else if verb(b"QUIT") {
            self.say(b"221 2.0.0 bye\r\n");
        } else {
            self.say(b"500 5.5.2 what\r\n");
        }
    }
}

fn server(ctx: *mut c_void) -> &'static mut Server {
    // SAFETY: ctx is the address of SERVER, used by one call at a time on one core.
    unsafe { &mut *ctx.cast::<Server>() }
}

unsafe extern "C" fn connect(ctx: *mut c_void) -> i32 {
    let s = server(ctx);
    s.reply_len = 0;
    s.reply_pos = 0;
    s.line_len = 0;
    s.in_data = false;
    s.login = 0;
    s.say(b"220 m4.example ESMTP\r\n");
    0
}

unsafe extern "C" fn send(ctx: *mut c_void, data: *const u8, len: usize) -> i32 {
    let s = server(ctx);
    let data = unsafe { core::slice::from_raw_parts(data, len) };
    for &b in data {
        if s.line_len < s.line.len() {
            s.line[s.line_len] = b;
            s.line_len += 1;
        }
        if b == b'\n' {
            s.on_line();
        }
    }
    len as i32
}

unsafe extern "C" fn recv(ctx: *mut c_void, buf: *mut u8, len: usize) -> i32 {
    let s = server(ctx);
    if s.reply_pos == s.reply_len {
        s.reply_pos = 0;
        s.reply_len = 0;
        return POSTLINE_IO_AGAIN;
    }
    let n = len.min(s.reply_len - s.reply_pos);
    let buf = unsafe { core::slice::from_raw_parts_mut(buf, n) };
    buf.copy_from_slice(&s.reply[s.reply_pos..s.reply_pos + n]);
    s.reply_pos += n;
    n as i32
}

unsafe extern "C" fn close(_: *mut c_void) {}

unsafe extern "C" fn now_ms(ctx: *mut c_void) -> u64 {
    let s = server(ctx);
    s.ticks += 1;
    s.ticks
}

unsafe extern "C" fn unix_time(ctx: *mut c_void) -> i64 {
    match server(ctx).run {
        Run::Composing => -1,
        _ => 1_764_800_000,
    }
}

/// The client's memory, static as on a device.
#[repr(C, align(8))]
struct Memory([u8; 2048]);
static mut MEMORY: Memory = Memory([0; 2048]);

const PAINT: u32 = 0x5A5A_A5A5;
/// How far below the measuring frame the stack is painted.
const PAINTED: usize = 16 * 1024;
/// Left unpainted just below the measuring frame (the painting call's own frame).
const GAP: usize = 256;

#[inline(never)]
fn paint(sp: usize) {
    let mut p = sp - PAINTED;
    while p < sp - GAP {
        // SAFETY: RAM below the live stack, 16 KiB of the 4 MiB board's.
        unsafe { (p as *mut u32).write_volatile(PAINT) };
        p += 4;
    }
}

/// The deepest the stack went below `sp` since [`paint`].
fn depth(sp: usize) -> usize {
    let mut p = sp - PAINTED;
    // SAFETY: the painted range.
    while p < sp - GAP && unsafe { (p as *const u32).read_volatile() } == PAINT {
        p += 4;
    }
    sp - p
}

#[inline(never)]
fn send_one(client: *mut postline_client, run: Run) -> i32 {
    let from = c"device@example.com".as_ptr();
    let to = [c"ops@example.com".as_ptr(), c"oncall@example.com".as_ptr()];
    let subject = match run {
        Run::Composing => c"Temp\xc3\xa9rature \xc3\xa9lev\xc3\xa9e au capteur 7".as_ptr(),
        _ => c"Sensor 7 over threshold".as_ptr(),
    };
    let body = b"Sensor 7 read 81.5 C at 12:00.\n.\nA line with a dot.\n";
    let mut codes = [0u16; 2];
    let mut status = core::mem::MaybeUninit::<postline_status>::uninit();
    unsafe {
        postline_send_mail(
            client,
            from,
            to.as_ptr(),
            to.len(),
            POSTLINE_PRIORITY_HIGH,
            subject,
            body.as_ptr(),
            body.len(),
            codes.as_mut_ptr(),
            status.as_mut_ptr(),
        )
    }
}

#[entry]
fn main() -> ! {
    let mut all_ok = true;
    let state = unsafe { postline_client_size() };
    let mut deepest = 0;
    for (run, name) in [
        (Run::Sending, "sending"),
        (Run::Plain, "plain"),
        (Run::Login, "login"),
        (Run::Composing, "composing"),
    ] {
        // SAFETY: one core, nothing else uses these statics.
        let ctx = unsafe {
            (*addr_of_mut!(SERVER)).run = run;
            addr_of_mut!(SERVER).cast::<c_void>()
        };
        let auth = run == Run::Plain || run == Run::Login;
        let config = postline_config {
            hello: c"sensor7.example.com".as_ptr(),
            user: if auth {
                c"device".as_ptr()
            } else {
                core::ptr::null::<c_char>()
            },
            password: if auth {
                c"secret".as_ptr()
            } else {
                core::ptr::null()
            },
            allow_plaintext_auth: 1,
            timeout_ms: 10_000,
        };
        let io = postline_io {
            ctx,
            connect: Some(connect),
            send: Some(send),
            recv: Some(recv),
            close: Some(close),
            now_ms: Some(now_ms),
            unix_time: Some(unix_time),
        };
        let client = unsafe {
            postline_client_create(
                addr_of_mut!(MEMORY).cast::<c_void>(),
                core::mem::size_of::<Memory>(),
                &config,
                &io,
            )
        };
        if client.is_null() {
            hprintln!("create failed");
            debug::exit(debug::EXIT_FAILURE);
        }
        let sp = cortex_m::register::msp::read() as usize;
        paint(sp);
        let result = send_one(client, run);
        let used = depth(sp);
        deepest = deepest.max(used);
        all_ok &= result == POSTLINE_RESULT_OK;
        hprintln!("stack {} {} result {}", name, used, result);
    }
    // SAFETY: read after the calls.
    let delivered = unsafe { (*addr_of!(SERVER)).delivered };
    all_ok &= delivered == 4;
    hprintln!("state {}", state);
    hprintln!("peak {}", deepest);
    hprintln!("delivered {}", delivered);
    debug::exit(if all_ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}
