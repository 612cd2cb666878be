//! Micro-benchmarks of the forwarding path's hot functions: SRTP protect/unprotect with
//! each crypto backend str0m offers without a system library (aws-lc-rs, which the
//! dataplane uses, and RustCrypto), the RTP sequence/timestamp rewrite,
//! the routing lookups a datagram goes through (classify, peer by address,
//! subscribers by publication), and ULPFEC: keeping a protected packet, and recovering one
//! from a group of ten.
//!
//! `cargo bench -p switchyard-dataplane --bench hot_path`

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use str0m::crypto::{AeadAes128Gcm, Aes128CmSha1_80};
use switchyard_dataplane::demux::{classify, PacketClass};
use switchyard_dataplane::packet::ulpfec::{self, Protected};
use switchyard_dataplane::rewrite::Rewriter;

const PAYLOAD: usize = 1160;

fn srtp(c: &mut Criterion) {
    srtp_with(c, "aws-lc-rs", &str0m_aws_lc_rs::default_provider());
    gcm_backends(c);
}

/// AEAD_AES_128_GCM sealing of one packet (the header as AAD, the tag detached) by each
/// AES-NI backend in reach: aws-lc-rs (what str0m uses here), ring, RustCrypto's aes-gcm.
fn gcm_backends(c: &mut Criterion) {
    let mut g = c.benchmark_group("gcm128_seal");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    let header = [
        0x80u8, 0x60, 0x12, 0x34, 0, 0, 0x10, 0, 0xde, 0xad, 0xbe, 0xef,
    ];
    let nonce = [3u8; 12];
    let mut buf = vec![0x5au8; PAYLOAD];

    let aws = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_128_GCM, &[7; 16])
            .unwrap_or_else(|_| unreachable!()),
    );
    g.bench_function("aws-lc-rs", |b| {
        b.iter(|| {
            let n = aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce);
            let tag = aws.seal_in_place_separate_tag(
                n,
                aws_lc_rs::aead::Aad::from(&header),
                black_box(&mut buf),
            );
            black_box(tag.is_ok())
        })
    });

    let ring_key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_128_GCM, &[7; 16])
            .unwrap_or_else(|_| unreachable!()),
    );
    g.bench_function("ring", |b| {
        b.iter(|| {
            let n = ring::aead::Nonce::assume_unique_for_key(nonce);
            let tag = ring_key.seal_in_place_separate_tag(
                n,
                ring::aead::Aad::from(&header),
                black_box(&mut buf),
            );
            black_box(tag.is_ok())
        })
    });

    use aes_gcm::aead::{AeadInPlace, KeyInit};
    let rc = aes_gcm::Aes128Gcm::new(&[7u8; 16].into());
    g.bench_function("rust-crypto", |b| {
        b.iter(|| {
            let tag = rc.encrypt_in_place_detached(&nonce.into(), &header, black_box(&mut buf));
            black_box(tag.is_ok())
        })
    });
    g.finish();
}

fn srtp_with(c: &mut Criterion, backend: &str, p: &str0m::crypto::CryptoProvider) {
    let mut g = c.benchmark_group(format!("srtp/{backend}"));
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    let header = [
        0x80u8, 0x60, 0x12, 0x34, 0, 0, 0x10, 0, 0xde, 0xad, 0xbe, 0xef,
    ];
    let plain = vec![0x5au8; PAYLOAD];

    // AEAD_AES_128_GCM and AEAD_AES_256_GCM (RFC 7714): the header is the AAD, a 16-byte
    // tag follows.
    let mut enc = p
        .srtp_provider
        .aead_aes_128_gcm()
        .create_cipher([7; 16], true);
    let mut dec = p
        .srtp_provider
        .aead_aes_128_gcm()
        .create_cipher([7; 16], false);
    let iv = AeadAes128Gcm::rtp_iv([3; 12], 0xdeadbeef, 0, 0x1234);
    let mut sealed = vec![0u8; PAYLOAD + 16];
    g.bench_function("aead_aes_128_gcm/protect", |b| {
        b.iter(|| {
            let _ = enc.encrypt(&iv, &header, black_box(&plain), &mut sealed);
        })
    });
    let _ = enc.encrypt(&iv, &header, &plain, &mut sealed);
    let mut opened = vec![0u8; PAYLOAD + 16];
    g.bench_function("aead_aes_128_gcm/unprotect", |b| {
        b.iter(|| {
            let n = dec.decrypt(&iv, &[&header], black_box(&sealed), &mut opened);
            assert!(n.is_ok());
        })
    });
    let mut enc256 = p
        .srtp_provider
        .aead_aes_256_gcm()
        .create_cipher([7; 32], true);
    g.bench_function("aead_aes_256_gcm/protect", |b| {
        b.iter(|| {
            let _ = enc256.encrypt(&iv, &header, black_box(&plain), &mut sealed);
        })
    });

    // AES_CM_128_HMAC_SHA1_80 (RFC 3711): counter mode, then an 80-bit HMAC-SHA1 tag.
    let mut cm_enc = p
        .srtp_provider
        .aes_128_cm_sha1_80()
        .create_cipher([7; 16], true);
    let mut cm_dec = p
        .srtp_provider
        .aes_128_cm_sha1_80()
        .create_cipher([7; 16], false);
    let hmac = |k: &[u8], d: &[&[u8]]| p.sha1_hmac_provider.sha1_hmac(k, d);
    let key = [9u8; 20];
    let cm_iv = Aes128CmSha1_80::rtp_iv([3; 14], 0xdeadbeef, 0x1234);
    // Counter-mode backends may write up to a block past the input: room for it.
    let mut packet = vec![0u8; 12 + PAYLOAD + 16];
    packet[..12].copy_from_slice(&header);
    g.bench_function("aes_128_cm_sha1_80/protect", |b| {
        b.iter(|| {
            let (head, body) = packet.split_at_mut(12);
            let _ = cm_enc.encrypt(&cm_iv, black_box(&plain), &mut body[..PAYLOAD + 16]);
            let _ = head;
            Aes128CmSha1_80::rtp_hmac(hmac, &key, &mut packet, 0x1234, 12 + PAYLOAD);
        })
    });
    let mut out = vec![0u8; PAYLOAD + 16];
    g.bench_function("aes_128_cm_sha1_80/unprotect", |b| {
        b.iter(|| {
            let ok = Aes128CmSha1_80::rtp_verify(
                hmac,
                &key,
                &packet[..12 + PAYLOAD],
                0x1234,
                &packet[12 + PAYLOAD..12 + PAYLOAD + 10],
            );
            assert!(ok);
            let _ = cm_dec.decrypt(&cm_iv, black_box(&packet[12..12 + PAYLOAD]), &mut out);
        })
    });
    g.finish();
}

fn rewrite(c: &mut Criterion) {
    let now = Instant::now();
    c.bench_function("rtp_rewrite/in_order", |b| {
        b.iter_batched_ref(
            || (Rewriter::new(90_000, 1000), 50_000u64),
            |(rw, seq)| {
                for _ in 0..64 {
                    *seq += 1;
                    black_box(rw.rewrite(0x1111, *seq, (*seq as u32) * 3000, now));
                }
            },
            BatchSize::SmallInput,
        )
    });
}

fn routing(c: &mut Criterion) {
    // A core with 1,000 peers and 100 publications of 10 subscribers each.
    let local: SocketAddr = "10.0.0.1:40000".parse().unwrap_or_else(|_| unreachable!());
    let mut by_addr = HashMap::new();
    let mut remotes = Vec::new();
    for i in 0..1000u32 {
        let remote =
            SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 50_000 + (i % 1000) as u16));
        by_addr.insert((remote, local), i as u64);
        remotes.push(remote);
    }
    let mut subscribers: HashMap<Arc<str>, Vec<(u64, Arc<str>)>> = HashMap::new();
    let mut pubs = Vec::new();
    for p in 0..100 {
        let id: Arc<str> = Arc::from(format!("room-1-stream-{p:04}").as_str());
        let subs = (0..10)
            .map(|s| {
                (
                    (p * 10 + s) as u64,
                    Arc::from(format!("sub-{p}-{s}").as_str()),
                )
            })
            .collect();
        subscribers.insert(id.clone(), subs);
        pubs.push(id);
    }
    let rtp = [0x80u8, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xaa, 0xbb];
    let mut i = 0usize;
    c.bench_function("routing/classify+peer+subscribers", |b| {
        b.iter(|| {
            i = (i + 7) % remotes.len();
            let class = classify(black_box(&rtp));
            assert_eq!(class, PacketClass::Rtp);
            let peer = by_addr.get(&(remotes[i], local));
            let subs = subscribers.get(&pubs[i % pubs.len()]);
            black_box((peer, subs.map(|s| s.len())))
        })
    });
}

fn fec(c: &mut Criterion) {
    // Ten packets of 1,160 bytes after a 20-byte header tail, one FEC packet over them.
    let packets: Vec<Protected> = (0..10u8)
        .map(|i| Protected {
            b0: 0x90,
            b1: 96 | if i == 9 { 0x80 } else { 0 },
            ts: 9000,
            body: vec![i; 20 + PAYLOAD].into(),
        })
        .collect();
    let group: Vec<(u16, &Protected)> = packets.iter().zip(100u16..).map(|(p, s)| (s, p)).collect();
    let fec = ulpfec::encode(&group);
    let mut g = c.benchmark_group("ulpfec");
    g.throughput(Throughput::Elements(1));
    // What every packet of a stream that sends FEC costs: its bytes copied and kept.
    let mut seq = 1000u64;
    let mut r = ulpfec::Receiver::default();
    r.on_fec(999, &fec).ok();
    g.bench_function("keep_one_packet", |b| {
        b.iter(|| {
            seq += 1;
            let p = Protected {
                body: packets[0].body.to_vec().into(),
                ..packets[0].clone()
            };
            black_box(r.on_media(seq, Some(p)))
        })
    });
    // Nine of ten arrived, then the FEC packet: the sixth comes back.
    g.bench_function("recover_one_of_ten", |b| {
        b.iter_batched_ref(
            || {
                let mut r = ulpfec::Receiver::default();
                for (i, p) in packets.iter().enumerate().filter(|(i, _)| *i != 5) {
                    r.on_media(100 + i as u64, Some(p.clone()));
                }
                r
            },
            |r| {
                let got = r.on_fec(110, black_box(&fec)).unwrap_or_default();
                assert_eq!(got.len(), 1);
                black_box(got)
            },
            BatchSize::SmallInput,
        )
    });
    // A player's protection (str0m's encoder): what each protected packet costs as it is
    // sent (its bytes XORed into the group), and the FEC packet written after ten.
    let mut e = str0m::rtp::UlpfecEncoder::new();
    let mut n = 0u16;
    g.bench_function("protect_one_packet", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            if n.is_multiple_of(10) {
                e = str0m::rtp::UlpfecEncoder::new();
            }
            let p = &packets[usize::from(n % 10)];
            e.add(
                n,
                p.b0,
                p.b1,
                p.ts,
                &[black_box(&p.body[..20]), &p.body[20..]],
            );
        })
    });
    let mut out = vec![0u8; 1500];
    g.bench_function("write_fec_over_ten", |b| {
        b.iter_batched_ref(
            || {
                let mut e = str0m::rtp::UlpfecEncoder::new();
                for (i, p) in packets.iter().enumerate() {
                    e.add(100 + i as u16, p.b0, p.b1, p.ts, &[&p.body]);
                }
                e
            },
            |e| black_box(e.finish(&mut out)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, srtp, rewrite, routing, fec);
criterion_main!(benches);
