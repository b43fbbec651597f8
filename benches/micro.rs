//! Micro benchmarks of the hot paths, through the library's public API.
//!
//! Run: `cargo bench --bench micro` (add a filter, e.g. `-- fanout`).
//! Each group is short (1 s warm-up, 3 s measurement) so the whole suite,
//! micro and end-to-end, stays within the 15-minute budget on 2 cores.

use std::hint::black_box;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use hubbub::bench::{Conn, Transport};
use hubbub::config::MAX_HEADERS;
use hubbub::store::{Backend, Desk, Request, StoredMessage, Ticket};

/// Any ticket: the benchmarks read replies only to drop them.
const TICKET: Ticket = Ticket {
    desk: Desk::Hub,
    seq: 1,
};
use hubbub::bench::{Assembler, Fed, decode_frame};
use hubbub::bench::{Encoder, Out, Ts};

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .without_plots()
}

// ---- HTTP request heads --------------------------------------------------

/// The head a browser sends to open a chat socket (≈ 420 bytes, 9 headers).
const UPGRADE_HEAD: &[u8] = b"GET /ws/room/general?token=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsIm5hbWUiOiJhbGljZSIsImlhdCI6MTc2ODQ3MzAwMCwiZXhwIjoxNzY4NTU5NDAwfQ.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Sec-WebSocket-Version: 13\r\n\
Origin: http://127.0.0.1:8080\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Connection: keep-alive, Upgrade\r\n\
Upgrade: websocket\r\n\r\n";

const LOGIN_REQUEST: &[u8] = b"POST /api/login HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
Content-Type: application/json\r\n\
Content-Length: 44\r\n\r\n\
{\"username\":\"alice\",\"password\":\"secret123\"}";

fn http_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("http_parse");
    for (name, req) in [
        ("ws_upgrade_head", UPGRADE_HEAD),
        ("login_post", LOGIN_REQUEST),
    ] {
        g.throughput(Throughput::Bytes(req.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let parsed =
                    hubbub::bench::parse_request(black_box(req), &mut headers).expect("valid");
                black_box(parsed.map(|(r, used)| (r.path.len(), r.headers.len(), used)))
            })
        });
    }
    g.finish();
}

// ---- WebSocket frames from clients ---------------------------------------

/// A masked client frame, as a browser sends a chat message.
fn masked_frame(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![0x81];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

const CHAT_FRAME: &[u8] =
    br#"{"type":"message","room":"general","content":"hello everyone, how is it going today?"}"#;

fn ws_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_decode");
    let one = masked_frame(CHAT_FRAME, [0x37, 0xfa, 0x21, 0x3d]);
    g.throughput(Throughput::Elements(1));
    // Decoding unmasks in place, so every iteration gets a fresh copy (a
    // ~100-byte memcpy, included in the figure).
    g.bench_function("one_chat_frame", |b| {
        let mut asm = Assembler::default();
        b.iter_batched_ref(
            || one.clone(),
            |buf| {
                let f = decode_frame(buf, 1 << 16)
                    .expect("valid")
                    .expect("complete");
                match asm.feed(&f, buf, 1 << 16).expect("valid") {
                    Fed::Whole(m) => black_box(matches!(m, hubbub::bench::Message::Text(_))),
                    _ => unreachable!(),
                }
            },
            BatchSize::SmallInput,
        )
    });
    // A 64 KiB read full of frames, decoded the way the loop does it.
    let mut batch = Vec::new();
    let mut n = 0u64;
    while batch.len() + one.len() <= 64 * 1024 {
        batch.extend_from_slice(&one);
        n += 1;
    }
    g.throughput(Throughput::Elements(n));
    g.bench_function("64KiB_read_of_frames", |b| {
        let mut asm = Assembler::default();
        b.iter_batched_ref(
            || batch.clone(),
            |buf| {
                let mut pos = 0;
                let mut texts = 0u32;
                while let Some(f) = decode_frame(&mut buf[pos..], 1 << 16).expect("valid") {
                    let f = hubbub::bench::RawFrame {
                        payload: f.payload.start + pos..f.payload.end + pos,
                        ..f
                    };
                    pos = f.payload.end;
                    if let Fed::Whole(hubbub::bench::Message::Text(t)) =
                        asm.feed(&f, buf, 1 << 16).expect("valid")
                    {
                        texts += t.len() as u32 & 1;
                    }
                }
                black_box(texts)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

// ---- Encoding a chat message once ------------------------------------------

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    let mut enc = Encoder::default();
    let mut id = 1_000_000u64;
    g.bench_function("message_shared", |b| {
        b.iter(|| {
            id += 1;
            black_box(enc.shared(&Out::Message {
                id,
                room: "general",
                user: "alice",
                content: black_box("hello everyone, how is it going today?"),
                timestamp: Ts(1_768_473_000_123),
                reply_to: None,
                edited_at: None,
                reactions: Vec::new(),
                attachments: &[],
            }))
        })
    });
    g.bench_function("client_frame_parse", |b| {
        b.iter(|| {
            let text = black_box(std::str::from_utf8(CHAT_FRAME).unwrap());
            black_box(hubbub::bench::Command::parse(text, false).is_ok())
        })
    });
    g.finish();
}

// ---- Queueing one frame to 1000 connections --------------------------------

struct Pairs {
    conns: Vec<Conn>,
    peers: Vec<TcpStream>,
}

fn pairs(n: usize) -> Pairs {
    raise_nofile();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = l.local_addr().unwrap();
    let mut conns = Vec::with_capacity(n);
    let mut peers = Vec::with_capacity(n);
    for i in 0..n {
        let client = TcpStream::connect(addr).expect("connect");
        let (server, _) = l.accept().expect("accept");
        server.set_nonblocking(true).unwrap();
        server.set_nodelay(true).unwrap();
        client.set_nonblocking(true).unwrap();
        conns.push(Conn::new(
            Transport::Plain(mio::net::TcpStream::from_std(server)),
            std::net::Ipv4Addr::LOCALHOST.into(),
            i as u64,
            0,
        ));
        peers.push(client);
    }
    Pairs { conns, peers }
}

fn raise_nofile() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Reads everything the peers have been sent (untimed housekeeping).
fn drain(peers: &mut [TcpStream], buf: &mut [u8]) {
    for p in peers {
        loop {
            match p.read(buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}

fn fanout(c: &mut Criterion) {
    const N: usize = 1000;
    let mut g = c.benchmark_group("fanout_1000");
    let mut p = pairs(N);
    let mut enc = Encoder::default();
    let frame: Rc<[u8]> = enc.shared(&Out::Message {
        id: 1,
        room: "general",
        user: "alice",
        content: "hello everyone, how is it going today?",
        timestamp: Ts(1_768_473_000_123),
        reply_to: None,
        edited_at: None,
        reactions: Vec::new(),
        attachments: &[],
    });
    let mut buf = vec![0u8; 256 * 1024];
    g.throughput(Throughput::Elements(N as u64));
    // Queue cost alone: queue to 1000, then drop the unsent frames again.
    g.bench_function("queue_shared", |b| {
        b.iter(|| {
            for c in &mut p.conns {
                black_box(c.queue_shared(&frame));
            }
            for c in &mut p.conns {
                c.discard_unsent();
            }
        })
    });
    // Queue k frames per connection and flush: one writev per connection.
    for k in [1usize, 16] {
        g.throughput(Throughput::Elements((N * k) as u64));
        g.bench_function(format!("queue_{k}_and_flush"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    for c in &mut p.conns {
                        for _ in 0..k {
                            c.queue_shared(&frame);
                        }
                        let r = c.flush(usize::MAX).expect("flush");
                        debug_assert_eq!(r, hubbub::bench::Flushed::All);
                    }
                    total += t.elapsed();
                    drain(&mut p.peers, &mut buf);
                }
                total
            })
        });
    }
    g.finish();
}

// ---- The storage writer's batched insert ------------------------------------

fn sqlite_insert(c: &mut Criterion) {
    let mut g = c.benchmark_group("sqlite_put_message");
    let dir = std::env::temp_dir().join(format!("hubbub-micro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut db = hubbub::store::sqlite::Sqlite::open(&dir.join("bench.db")).expect("open sqlite");
    let mut next_id = 1u64;
    let content = "hello everyone, how is it going today?".to_string();
    for batch in [1usize, 64, 1024] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("batch_{batch}"), |b| {
            b.iter_batched(
                || {
                    (0..batch)
                        .map(|i| {
                            next_id += 1;
                            Request::PutMessage {
                                msg: StoredMessage {
                                    id: next_id,
                                    room: Some(format!("room{}", i % 10)),
                                    from: (i % 100) as u32 + 1,
                                    to: None,
                                    content: content.clone(),
                                    timestamp_ms: 1_768_473_000_123 + next_id as i64,
                                    ..StoredMessage::default()
                                },
                                client_id: Some(format!("c{next_id}")),
                                mentions: Vec::new(),
                            }
                        })
                        .collect::<Vec<_>>()
                },
                |reqs| {
                    db.begin().expect("begin");
                    for r in &reqs {
                        black_box(db.execute(r).expect("insert"));
                    }
                    db.commit().expect("commit");
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
    // What every new WebSocket costs the writer: one `Unread` request in a
    // batch of its own, and an empty transaction for comparison.
    let mut g = c.benchmark_group("sqlite_per_connection");
    g.throughput(Throughput::Elements(1));
    g.bench_function("unread_batch_of_1", |b| {
        let mut user = 0u32;
        b.iter(|| {
            user = user % 100 + 1;
            db.begin().expect("begin");
            black_box(
                db.execute(&Request::Unread {
                    ticket: TICKET,
                    user,
                })
                .expect("unread"),
            );
            db.commit().expect("commit");
        })
    });
    g.bench_function("empty_transaction", |b| {
        b.iter(|| {
            db.begin().expect("begin");
            db.commit().expect("commit");
        })
    });
    g.finish();
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- image previews -------------------------------------------------------------

/// A 12-megapixel photo (4000 × 3000 JPEG, a phone's) made into its two
/// previews, as the image thread does for each image upload: decode with
/// the limits, orient, two resizes, two JPEG encodes, two blob writes.
/// `jpeg_12mp` is the server's path (a reduced-scale decode); in the same
/// run, `jpeg_12mp_full_decode` is the path before it (every pixel decoded,
/// then resized), so the two compare on the same machine at the same time.
fn previews(c: &mut Criterion) {
    use hubbub::bench::{DirStore, FileStore, encode_preview, inspect_image, write_blob};
    use image::ImageDecoder;
    let img = image::RgbImage::from_fn(4000, 3000, |x, y| {
        image::Rgb([(x / 16) as u8, (y / 12) as u8, ((x + y) / 28) as u8])
    });
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let dir = std::env::temp_dir().join(format!("hubbub-bench-previews-{}", std::process::id()));
    let store = DirStore::open(&dir).unwrap();
    let mut blobs = store.handle().unwrap();
    let key = write_blob(&mut *blobs, &jpeg).unwrap();
    let mut g = c.benchmark_group("previews");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("jpeg_12mp", |b| {
        b.iter(|| black_box(inspect_image(&mut *blobs, &key).unwrap()))
    });
    g.bench_function("jpeg_12mp_full_decode", |b| {
        b.iter(|| {
            let mut reader = image::ImageReader::new(std::io::Cursor::new(&jpeg))
                .with_guessed_format()
                .unwrap();
            let mut limits = image::Limits::default();
            limits.max_alloc = Some(256 * 1024 * 1024);
            reader.limits(limits);
            let mut decoder = reader.into_decoder().unwrap();
            let orientation = decoder.orientation().unwrap();
            let mut img = image::DynamicImage::from_decoder(decoder).unwrap();
            img.apply_orientation(orientation);
            let large = img.thumbnail(1600, 1600);
            let small = large.thumbnail(480, 480);
            black_box((
                write_blob(&mut *blobs, &encode_preview(&large)).unwrap(),
                write_blob(&mut *blobs, &encode_preview(&small)).unwrap(),
            ))
        })
    });
    g.finish();
    drop(blobs);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- Notes between cluster nodes -----------------------------------------

/// A chat message as a node hands it to the bus: the stored message's
/// `message` frame (157 bytes) in a `Message` note, about 200 bytes with
/// its stamp and target, before the 32-byte tag.
fn chat_note() -> Vec<u8> {
    use hubbub::bench::{Note, Stamp, TargetKey};
    let json = br#"{"type":"message","id":1099511627776,"room":"general","user":"alice","content":"see you at the stand-up in five minutes","ts":"2026-12-07T23:00:00.000Z"}"#;
    let mut frame = vec![0x81, 126];
    frame.extend_from_slice(&(json.len() as u16).to_be_bytes());
    frame.extend_from_slice(json);
    let stamp = Stamp {
        node: 0x9e37_79b9_7f4a_7c15,
        counter: 123_456,
        sent_ms: 1_796_684_400_000,
    };
    let note = Note::Message {
        target: TargetKey::Room("general".into()),
        seq: 41,
        id: 1 << 40,
        frame: std::borrow::Cow::Owned(frame),
    };
    hubbub::bench::encode_note(stamp, &note)
}

/// What the cluster key costs a note: encode against encode and seal on
/// the sender, decode against open and decode on each receiver (the
/// HMAC-SHA256 over ~200 bytes is the difference).
fn bus_seal(c: &mut Criterion) {
    use hubbub::bench::{Seal, decode_note, encode_note};
    let bytes = chat_note();
    let env = decode_note(&bytes).expect("a valid note");
    let seal = Seal::new(&[7u8; 32]).expect("a 32-byte key");
    let sealed = seal.close(bytes.clone());
    let mut g = c.benchmark_group("bus_seal");
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("encode_{}B", bytes.len()), |b| {
        b.iter(|| encode_note(black_box(env.stamp), black_box(&env.note)))
    });
    g.bench_function(format!("encode_seal_{}B", bytes.len()), |b| {
        b.iter(|| seal.close(encode_note(black_box(env.stamp), black_box(&env.note))))
    });
    g.bench_function(format!("decode_{}B", bytes.len()), |b| {
        b.iter(|| decode_note(black_box(&bytes)).expect("valid"))
    });
    g.bench_function(format!("open_decode_{}B", bytes.len()), |b| {
        b.iter(|| decode_note(seal.open(black_box(&sealed)).expect("verifies")).expect("valid"))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = http_parse, ws_decode, encode, fanout, sqlite_insert, previews, bus_seal
}
criterion_main!(benches);
