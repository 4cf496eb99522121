//! Fuzz target: arbitrary bytes through the frame decoder, both the pure parser and the
//! blocking connection (which adds body streaming). It must never panic, never allocate from
//! an unchecked length, and always end (every input is finite).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockit::blocking::Connection;
use sockit::protocol::{Head, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_header_len: 4096, max_body: 1 << 20 };
    let _ = Head::parse(data, &limits);

    let mut conn = Connection::new(std::io::Cursor::new(data.to_vec()), limits);
    while let Ok(Some(_head)) = conn.read_head() {
        if conn.read_body(1 << 16).is_err() {
            break;
        }
    }
});
