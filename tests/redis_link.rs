//! `hubbub::redis::RedisLink` end to end over a real `redis-server`: order,
//! binary payloads, large payloads, an outage and its recovery, a loop that
//! falls behind, and prompt shutdown. The wake callback feeds a channel the
//! test waits on, so a missing wake shows up as a timeout.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::services::{Redis, unique_channel};
use hubbub::redis::{IN_BOUND, LinkEvent, RedisLink};

/// A link with the receiving end of its wake-ups.
struct Probe {
    link: RedisLink,
    woken: mpsc::Receiver<()>,
}

impl Probe {
    fn start(url: &str, channel: &str) -> Probe {
        let (tx, woken) = mpsc::channel();
        let tx = Mutex::new(tx);
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            let _ = tx.lock().unwrap().send(());
        });
        let link = RedisLink::start(url, channel, None, wake).expect("valid URL");
        Probe { link, woken }
    }

    /// The next event, waiting for wake-ups; panics after `within`.
    fn next(&self, within: Duration) -> LinkEvent {
        let deadline = Instant::now() + within;
        loop {
            if let Some(ev) = self.link.try_recv() {
                return ev;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no link event within {within:?}");
            let _ = self.woken.recv_timeout(left);
        }
    }

    fn expect(&self, want: LinkEvent, within: Duration) {
        let got = self.next(within);
        assert_eq!(got, want, "link event");
    }

    /// `n` messages in a row (nothing else in between).
    fn messages(&self, n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| match self.next(Duration::from_secs(10)) {
                LinkEvent::Message(p) => p,
                other => panic!("message {i}: expected a message, got {other:?}"),
            })
            .collect()
    }
}

/// A payload that is not text and holds RESP's own delimiters.
fn payload(i: usize, len: usize) -> Vec<u8> {
    let mut p = format!("{i}\r\n$-1\r\n*3\r\n").into_bytes();
    let mut x = i as u32 ^ 0x9e37_79b9;
    while p.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p.push(x as u8);
    }
    p
}

const UP_WITHIN: Duration = Duration::from_secs(10);

/// Two links on one channel see each other's messages, each in publish
/// order, binary-safe; a publisher also hears its own (Redis echoes).
#[test]
fn two_links_see_each_others_messages_in_order() {
    let redis = Redis::shared();
    let channel = unique_channel("order");
    let a = Probe::start(redis.url(), &channel);
    let b = Probe::start(redis.url(), &channel);
    a.expect(LinkEvent::Up, UP_WITHIN);
    b.expect(LinkEvent::Up, UP_WITHIN);
    assert!(a.link.is_up() && b.link.is_up());

    let sent: Vec<Vec<u8>> = (0..1000).map(|i| payload(i, 20 + i % 200)).collect();
    for p in &sent {
        assert!(a.link.publish(p.clone()), "publish while up");
    }
    assert_eq!(b.messages(1000), sent, "b hears a's messages in order");
    assert_eq!(a.messages(1000), sent, "a hears its own, in order");

    let back: Vec<Vec<u8>> = (0..1000).map(|i| payload(i + 5000, 64)).collect();
    for p in &back {
        assert!(b.link.publish(p.clone()));
    }
    assert_eq!(a.messages(1000), back, "a hears b's messages in order");
    assert_eq!(b.messages(1000), back);
    assert!(a.link.try_recv().is_none() && b.link.try_recv().is_none());

    let other = Probe::start(redis.url(), &unique_channel("other"));
    other.expect(LinkEvent::Up, UP_WITHIN);
    assert!(a.link.publish(b"not for other".to_vec()));
    assert_eq!(b.messages(1), vec![b"not for other".to_vec()]);
    thread::sleep(Duration::from_millis(100));
    assert!(other.link.try_recv().is_none(), "channels are separate");
}

/// A 1 MiB payload crosses whole (many reads on the subscriber side).
#[test]
fn a_mebibyte_payload_crosses() {
    let redis = Redis::shared();
    let channel = unique_channel("big");
    let a = Probe::start(redis.url(), &channel);
    let b = Probe::start(redis.url(), &channel);
    a.expect(LinkEvent::Up, UP_WITHIN);
    b.expect(LinkEvent::Up, UP_WITHIN);
    let big = payload(7, 1 << 20);
    assert!(a.link.publish(big.clone()));
    assert!(a.link.publish(b"after".to_vec()));
    let got = b.messages(2);
    assert!(got[0] == big, "1 MiB payload arrived intact");
    assert_eq!(got[1], b"after");
}

/// Redis going away: both links report `Down` once and refuse to publish;
/// Redis coming back: both report `Up` and traffic flows again. Shutdown is
/// prompt both while up and while Redis is gone.
#[test]
fn an_outage_is_down_then_up_and_traffic_resumes() {
    let mut redis = Redis::start();
    let channel = unique_channel("outage");
    let a = Probe::start(&redis.url(), &channel);
    let mut b = Probe::start(&redis.url(), &channel);
    a.expect(LinkEvent::Up, UP_WITHIN);
    b.expect(LinkEvent::Up, UP_WITHIN);

    redis.stop();
    a.expect(LinkEvent::Down, Duration::from_secs(5));
    b.expect(LinkEvent::Down, Duration::from_secs(5));
    assert!(!a.link.is_up() && !b.link.is_up());
    assert!(!a.link.publish(b"lost".to_vec()), "publish while down");
    // Retries go on in the background without further events.
    thread::sleep(Duration::from_millis(500));
    assert!(a.link.try_recv().is_none() && b.link.try_recv().is_none());

    redis.restart();
    a.expect(LinkEvent::Up, UP_WITHIN);
    b.expect(LinkEvent::Up, UP_WITHIN);
    for i in 0..10 {
        assert!(a.link.publish(payload(i, 100)));
    }
    let want: Vec<Vec<u8>> = (0..10).map(|i| payload(i, 100)).collect();
    assert_eq!(b.messages(10), want, "traffic after the outage");
    assert_eq!(a.messages(10), want);

    let t = Instant::now();
    b.link.shutdown();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "shutdown while up took {:?}",
        t.elapsed()
    );
    assert!(!b.link.is_up() && !b.link.publish(b"x".to_vec()));

    redis.stop();
    a.expect(LinkEvent::Down, Duration::from_secs(5));
    thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    drop(a);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "shutdown while down took {:?}",
        t.elapsed()
    );
}

/// A loop that stops taking messages: past `IN_BOUND` the subscriber drops
/// its connection (`Down`), and once the loop has caught up the link comes
/// back (`Up`) and carries traffic again.
#[test]
fn a_loop_that_falls_behind_sees_down_then_up() {
    let redis = Redis::shared();
    let channel = unique_channel("behind");
    let slow = Probe::start(redis.url(), &channel);
    let feeder = Probe::start(redis.url(), &channel);
    slow.expect(LinkEvent::Up, UP_WITHIN);
    feeder.expect(LinkEvent::Up, UP_WITHIN);

    let chunk = 1 << 20;
    let total = IN_BOUND / chunk + 8;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    while sent < total {
        assert!(Instant::now() < deadline, "could not publish {total} MiB");
        // The feeder's own echo is drained so only `slow` falls behind.
        while feeder.link.try_recv().is_some() {}
        if feeder.link.publish(payload(sent, chunk)) {
            sent += 1;
        } else {
            thread::sleep(Duration::from_millis(5));
        }
    }
    // `slow` took nothing so far: it must have dropped the subscription.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut messages = 0;
    loop {
        assert!(Instant::now() < deadline, "no Down from the slow link");
        while feeder.link.try_recv().is_some() {}
        if !slow.link.is_up() {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    loop {
        match slow.next(Duration::from_secs(10)) {
            LinkEvent::Message(p) => {
                assert_eq!(p.len(), chunk);
                messages += 1;
            }
            LinkEvent::Down => break,
            LinkEvent::Up => panic!("Up before Down"),
        }
    }
    assert!(
        messages > 0 && messages < total,
        "{messages} of {total} delivered before Down"
    );
    slow.expect(LinkEvent::Up, UP_WITHIN);
    assert!(feeder.link.publish(b"again".to_vec()));
    assert_eq!(slow.messages(1), vec![b"again".to_vec()]);
}

/// A password in the URL is sent with AUTH (alone, or with a user); a wrong
/// one keeps the link down without an event, and retrying does not panic.
#[test]
fn the_urls_credentials_authenticate() {
    let redis = Redis::start_with(&["--requirepass", "s3cret"]);
    let port = redis.port();
    let channel = unique_channel("auth");
    let a = Probe::start(&format!("redis://:s3cret@127.0.0.1:{port}"), &channel);
    let b = Probe::start(
        &format!("redis://default:s3cret@127.0.0.1:{port}/0"),
        &channel,
    );
    let wrong = Probe::start(&format!("redis://:nope@127.0.0.1:{port}"), &channel);
    let none = Probe::start(&format!("redis://127.0.0.1:{port}"), &channel);
    a.expect(LinkEvent::Up, UP_WITHIN);
    b.expect(LinkEvent::Up, UP_WITHIN);
    assert!(a.link.publish(b"authenticated".to_vec()));
    assert_eq!(b.messages(1), vec![b"authenticated".to_vec()]);
    thread::sleep(Duration::from_millis(300));
    for p in [&wrong, &none] {
        assert!(!p.link.is_up(), "a link without the password is down");
        assert!(p.link.try_recv().is_none());
    }
}
