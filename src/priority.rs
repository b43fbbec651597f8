//! Background threads yield the CPU to the loop.
//!
//! The storage thread and the hashing pool do real work, but nobody waits on
//! them the way every client waits on the loop. When they share a core with
//! it (a small box, or `taskset` to one core), the scheduler should pick the
//! loop: on one core with the writer at nice 5, the loop's echo round trip
//! under a persistence flood fell from 2.8 ms / 13.4 ms (p50/p99) to
//! 0.9 ms / 7.2 ms, and persisted messages/s did not drop (BENCHMARKS.md).

/// Nice value of the storage thread: behind the loop, ahead of hashing.
pub const STORE_NICE: libc::c_int = 5;
/// Nice value of the hashing threads: PBKDF2 is background work; a login may
/// take longer under load, a `/healthz` or a chat frame should not.
pub const HASH_NICE: libc::c_int = 10;
/// Nice value of the file transfer threads: like storage, behind the loop.
pub const FILES_NICE: libc::c_int = 5;
/// Nice value of the image threads: decoding a photo is background work.
pub const IMAGE_NICE: libc::c_int = 10;
/// Nice value of the ACME thread: a certificate order may take seconds
/// whatever its priority; it must never take the loop's core.
pub const ACME_NICE: libc::c_int = 10;

/// Lowers the calling thread's priority to `nice`. On Linux `setpriority`
/// with a thread id applies to that thread alone. Failure is harmless.
pub fn lower_current_thread(nice: libc::c_int) {
    // SAFETY: gettid and setpriority take and return plain integers.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if rc != 0 {
        log::debug!(
            "could not lower a background thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}
