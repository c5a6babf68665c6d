//! The trusted part of every Rust test program, compiled once per process without any solution: it runs
//! the test functions on a few threads and prints one record per value and per finished test.
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static TESTS: OnceLock<&'static [fn()]> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);
const HEX: &[u8; 16] = b"0123456789abcdef";

/// One record, `\n\x1egw:TAG:K:HEX(text)\n`, written whole under the stdout lock.
pub fn put(tag: &str, k: usize, text: &str) {
    let mut line = Vec::with_capacity(text.len() * 2 + 32);
    line.extend_from_slice(b"\n\x1egw:");
    line.extend_from_slice(tag.as_bytes());
    line.push(b':');
    line.extend_from_slice(k.to_string().as_bytes());
    line.push(b':');
    for b in text.bytes() {
        line.push(HEX[(b >> 4) as usize]);
        line.push(HEX[(b & 15) as usize]);
    }
    line.push(b'\n');
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&line);
    let _ = out.flush();
}

/// The value of assertion site `k`, as its Debug text.
pub fn witness<T: std::fmt::Debug + ?Sized>(k: usize, value: &T) {
    put("w", k, &format!("{:?}", value));
}

fn worker() {
    let tests = TESTS.get().copied().unwrap_or(&[]);
    loop {
        let i = NEXT.fetch_add(1, Ordering::SeqCst);
        if i >= tests.len() {
            break;
        }
        let ok = std::panic::catch_unwind(tests[i]).is_ok();
        put(if ok { "end" } else { "fail" }, i, "");
    }
}

/// Run every test on `workers` threads (a test that hangs holds one thread; the others go on).
pub fn run(tests: &'static [fn()], workers: usize) {
    let _ = TESTS.set(tests);
    let handles: Vec<_> = (0..workers.max(1)).filter_map(|_| std::thread::Builder::new().spawn(worker).ok()).collect();
    if handles.is_empty() {
        worker();
    }
    for handle in handles {
        let _ = handle.join();
    }
}
