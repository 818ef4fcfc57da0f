//! Memory stays flat whatever the message size: a 64 MiB message streamed from a reader to
//! smtp-sink must not raise the heap's high-water mark by more than 64 KiB (measured: a few hundred bytes).
//! (A counting allocator measures the heap; this file holds one test so nothing else runs
//! beside it.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};

use postline::{Client, Config, Envelope, Tls};
use postline_testkit::SmtpSink;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Generates `left` octets of text lines, some starting with a dot, without holding them.
struct Generated {
    left: usize,
    line: usize,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.left > 0 {
            let text: &[u8] = if self.line.is_multiple_of(3) {
                b".dotted line of text\r\n"
            } else {
                b"plain line\n"
            };
            let take = text.len().min(buf.len() - n).min(self.left);
            buf[n..n + take].copy_from_slice(&text[..take]);
            n += take;
            self.left -= take;
            if take == text.len() {
                self.line += 1;
            } else {
                break;
            }
        }
        Ok(n)
    }
}

#[test]
fn streaming_keeps_memory_flat() {
    let sink = SmtpSink::start(&[]);
    let config = Config::relay("127.0.0.1")
        .port(sink.port())
        .tls(Tls::None)
        .hello_name("client.test");
    let mut client = Client::connect(config).unwrap();
    let env = Envelope::new("a@client.test", ["b@sink.test"]).unwrap();
    // Warm up: buffers reach their working size on a small message.
    client
        .send(
            &env,
            Generated {
                left: 1 << 20,
                line: 0,
            },
        )
        .unwrap();
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let outcome = client
        .send(
            &env,
            Generated {
                left: 64 << 20,
                line: 0,
            },
        )
        .unwrap();
    assert_eq!(outcome.reply.code, 250);
    let growth = PEAK.load(Ordering::Relaxed) - base;
    println!("heap high-water growth while sending 64 MiB: {growth} bytes");
    assert!(
        growth < 64 * 1024,
        "heap grew by {growth} bytes for a 64 MiB message"
    );
    client.quit().unwrap();
}
