//! The blob contract, as a test every engine runs (`dir.rs` on a temp
//! directory, PostgreSQL on a test database): what the upload and download
//! paths and the sweep rely on, checked the same way for both.

use std::time::Duration;

use super::{BlobKey, FileStore, read_blob, write_blob};

/// A day: nothing committed in a test is this old.
const LONG: Duration = Duration::from_secs(86_400);

/// Bytes that cross several PostgreSQL chunks and end mid-chunk.
fn big() -> Vec<u8> {
    (0..700_001u32).map(|i| (i * 7 % 251) as u8).collect()
}

pub fn run(store: &dyn FileStore) {
    let mut a = store.handle().expect("a handle");
    let mut b = store.handle().expect("a second handle");

    // A draft is invisible until its commit; then every handle reads it.
    let data = big();
    let key = BlobKey::of(&data);
    let draft = a.create().unwrap();
    for piece in data.chunks(65_536) {
        a.append(draft, piece).unwrap();
    }
    assert!(b.open(&key).unwrap().is_none(), "visible before its commit");
    a.commit(draft, &key).unwrap();
    assert_eq!(
        read_blob(&mut *b, &key).unwrap().as_deref(),
        Some(&data[..])
    );

    // Reads at any offset, across chunk boundaries, and past the end.
    let (r, size) = b.open(&key).unwrap().unwrap();
    assert_eq!(size, data.len() as u64);
    for (at, len) in [(0usize, 10usize), (262_140, 9), (524_287, 3), (699_990, 64)] {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = b.read(r, (at + got) as u64, &mut buf[got..]).unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        let end = (at + len).min(data.len());
        assert_eq!(&buf[..got], &data[at..end], "at {at}");
    }
    let mut buf = [0u8; 8];
    assert_eq!(b.read(r, data.len() as u64, &mut buf).unwrap(), 0);
    b.close(r);

    // The same bytes committed again are one blob, still readable.
    let again = write_blob(&mut *b, &data).unwrap();
    assert_eq!(again, key);
    assert_eq!(
        read_blob(&mut *a, &key).unwrap().map(|v| v.len()),
        Some(data.len())
    );

    // A discarded draft leaves nothing.
    let small = b"discard me";
    let d = a.create().unwrap();
    a.append(d, small).unwrap();
    a.discard(d);
    assert!(a.open(&BlobKey::of(small)).unwrap().is_none());

    // An empty blob is a blob.
    let empty = write_blob(&mut *a, b"").unwrap();
    assert_eq!(
        read_blob(&mut *b, &empty).unwrap().as_deref(),
        Some(&b""[..])
    );

    // The sweep's view: fresh blobs are neither listed nor removable with
    // a long idle time; with none they are, in key order after a cursor.
    let third = write_blob(&mut *a, b"third").unwrap();
    assert!(a.list(None, LONG, 10).unwrap().is_empty());
    assert!(!a.remove(&third, LONG).unwrap(), "fresh blobs stay");
    let mut all = vec![key, empty, third];
    all.sort_unstable();
    assert_eq!(a.list(None, Duration::ZERO, 10).unwrap(), all);
    assert_eq!(a.list(Some(&all[0]), Duration::ZERO, 1).unwrap(), [all[1]]);
    assert!(a.remove(&third, Duration::ZERO).unwrap());
    assert!(!a.remove(&third, Duration::ZERO).unwrap(), "already gone");
    assert!(b.open(&third).unwrap().is_none());
    assert_eq!(
        read_blob(&mut *b, &key).unwrap().map(|v| v.len()),
        Some(data.len()),
        "the others are kept"
    );
}
