//! Encode + decode cost of a small get request and a 1 KiB put, in ns per message.
//!
//! `cargo bench -p net --bench codec`
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use net::message::kv::{Cond, Expiry, KvOp, KvRequest};
use net::message::{Message, RouteCtx};
use net::{Epoch, FrameDecoder, RangeId, RequestId};

fn request(op: KvOp) -> Message {
    Message::KvRequest(KvRequest {
        ctx: RouteCtx {
            range_id: RangeId(7),
            epoch: Epoch {
                conf_ver: 3,
                version: 9,
            },
        },
        op,
    })
}

fn bench(c: &mut Criterion) {
    let get = request(KvOp::StrGet {
        key: Bytes::from_static(b"user:0000001234"),
    });
    let put = request(KvOp::StrSet {
        key: Bytes::from_static(b"user:0000001234"),
        value: Bytes::from(vec![0xab; 1024]),
        expiry: Expiry::Persist {},
        cond: Cond::Always {},
        get_old: false,
    });
    let decoder = FrameDecoder::default();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    for (name, msg) in [("get_small", &get), ("put_1k", &put)] {
        let mut buf = BytesMut::with_capacity(4096);
        g.bench_function(format!("{name}/encode+decode"), |b| {
            b.iter(|| {
                black_box(msg).encode_frame(RequestId(1), &mut buf);
                let frame = decoder.decode(&mut buf).unwrap().unwrap();
                black_box(Message::from_frame(frame).unwrap());
                // Keep the buffer's allocation, as a connection's receive buffer does.
                buf.reserve(4096);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
