//! Encode/decode throughput of the frame codec for 64 B and 64 KiB bodies.
//! Run with `cargo bench --bench codec`; figures in the README's Performance section.

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sockit::protocol::{Head, Limits, Reply, Request, encode_head, header::Empty};
use std::hint::black_box;

fn codec(c: &mut Criterion) {
    let limits = Limits::default();
    for size in [64usize, 64 * 1024] {
        let body = vec![0x5a; size];
        let mut group = c.benchmark_group(format!("frame/{size}B"));
        group.throughput(Throughput::Bytes(size as u64));

        let mut buf = BytesMut::with_capacity(size + 256);
        group.bench_function(BenchmarkId::new("encode", "reply"), |b| {
            b.iter(|| {
                buf.clear();
                encode_head(&Reply::ok(Empty {}), body.len() as u64, &mut buf).unwrap();
                buf.extend_from_slice(black_box(&body));
                black_box(buf.len())
            })
        });

        let mut wire = BytesMut::new();
        encode_head(&json!({"op": "echo"}), body.len() as u64, &mut wire).unwrap();
        wire.extend_from_slice(&body);
        group.bench_function(BenchmarkId::new("decode", "request"), |b| {
            b.iter(|| {
                let (head, used) = Head::parse(black_box(&wire), &limits).unwrap();
                let body = &wire[used..used + head.body_len as usize];
                black_box((head, body.len()))
            })
        });
        // What the server does per request after the parse: the typed request.
        let (head, _) = Head::parse(&wire, &limits).unwrap();
        group.bench_function(BenchmarkId::new("typed", "request"), |b| {
            b.iter(|| black_box(Request::from_head(black_box(&head)).unwrap()))
        });
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
