//! Property: any sequence of messages, cut at any byte boundaries, decodes to the same
//! sequence, through both the async and the blocking front ends.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use bytes::BytesMut;
use proptest::prelude::*;
use serde_json::json;
use sockit::protocol::{Limits, encode_head};

/// A reader that hands out the wire in the given cut sizes.
struct Cuts {
    wire: VecDeque<u8>,
    cuts: Vec<usize>,
    next: usize,
}

impl Read for Cuts {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let cut = self
            .cuts
            .get(self.next % self.cuts.len().max(1))
            .copied()
            .unwrap_or(1);
        self.next += 1;
        let n = cut.max(1).min(buf.len()).min(self.wire.len());
        for (dst, b) in buf.iter_mut().zip(self.wire.drain(..n)) {
            *dst = b;
        }
        Ok(n)
    }
}

impl Write for Cuts {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn messages() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    prop::collection::vec(
        (
            "[a-z粘包]{0,12}",
            prop::collection::vec(any::<u8>(), 0..3000),
        ),
        0..12,
    )
}

proptest! {
    #[test]
    fn any_cuts_decode_to_the_same_messages(
        msgs in messages(),
        cuts in prop::collection::vec(1usize..5000, 1..20),
    ) {
        let mut wire = BytesMut::new();
        for (name, body) in &msgs {
            encode_head(&json!({"op": "echo", "name": name}), body.len() as u64, &mut wire).unwrap();
            wire.extend_from_slice(body);
        }
        // Blocking front end.
        let reader = Cuts { wire: wire.iter().copied().collect(), cuts: cuts.clone(), next: 0 };
        let mut conn = sockit::blocking::Connection::new(reader, Limits::default());
        for (name, body) in &msgs {
            let head = conn.read_head().unwrap().unwrap();
            prop_assert_eq!(head.header["name"].as_str().unwrap(), name.as_str());
            prop_assert_eq!(&conn.read_body(1 << 20).unwrap(), body);
        }
        prop_assert!(conn.read_head().unwrap().is_none());

        // Async front end, over a duplex pipe written in the same cuts.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let decoded: Vec<(String, Vec<u8>)> = rt.block_on(async {
            let (mut tx, rx) = tokio::io::duplex(64);
            let writer = {
                let wire = wire.clone();
                let cuts = cuts.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut at = 0;
                    let mut i = 0;
                    while at < wire.len() {
                        let n = cuts[i % cuts.len()].min(wire.len() - at);
                        tx.write_all(&wire[at..at + n]).await.unwrap();
                        at += n;
                        i += 1;
                    }
                })
            };
            let mut conn = sockit::connection::Connection::new(rx, Limits::default());
            let mut out = Vec::new();
            while let Some(head) = conn.read_head().await.unwrap() {
                let name = head.header["name"].as_str().unwrap().to_string();
                out.push((name, conn.read_body(1 << 20).await.unwrap().to_vec()));
            }
            writer.await.unwrap();
            out
        });
        prop_assert_eq!(decoded, msgs);
    }
}
