//! SIGINT, SIGTERM and SIGHUP as readiness on the loop's `Poll`: the
//! self-pipe trick.
//!
//! A signal handler may only do async-signal-safe things; writing one byte
//! (the signal's number) to a pipe is one of them. The loop registers the
//! pipe's read end like any socket, so a signal arrives as an ordinary event
//! between two passes: shutdown starts from a known state, and a reload
//! (SIGHUP: certificates, log level) happens between two passes too. (signal-hook does the same; 40 lines
//! with `libc`, already in the tree through mio, did not justify a crate.)

use std::io::{self, Read};
use std::sync::atomic::{AtomicI32, Ordering};

use mio::unix::pipe;
use mio::{Interest, Registry, Token};

/// The write end the handler uses; -1 until installed.
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // Signal numbers fit a byte.
        let byte = signal as u8;
        // SAFETY: write(2) is async-signal-safe; a full pipe just drops the byte,
        // which is fine because one pending byte is enough to wake the loop.
        unsafe {
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
}

/// The loop's end of the signal pipe.
pub struct Signals {
    rx: pipe::Receiver,
    /// Kept open for the handler (its fd is in `WRITE_FD`).
    _tx: pipe::Sender,
}

impl Signals {
    /// Installs handlers for SIGINT, SIGTERM and SIGHUP and registers the pipe.
    pub fn install(registry: &Registry, token: Token) -> io::Result<Signals> {
        use std::os::fd::AsRawFd;
        let (tx, mut rx) = pipe::new()?;
        registry.register(&mut rx, token, Interest::READABLE)?;
        WRITE_FD.store(tx.as_raw_fd(), Ordering::Relaxed);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: a zeroed sigaction with a plain handler and SA_RESTART is
            // a valid argument; the handler only calls write(2).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(sig, &action, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(Signals { rx, _tx: tx })
    }

    /// Empties the pipe; says which signals were pending.
    pub fn drain(&mut self) -> Pending {
        let mut buf = [0u8; 64];
        let mut got = Pending::default();
        loop {
            match self.rx.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => {
                    for &b in &buf[..n] {
                        if libc::c_int::from(b) == libc::SIGHUP {
                            got.reload = true;
                        } else {
                            got.stop = true;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return got,
            }
        }
    }
}

/// What the signals that arrived ask for.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pending {
    /// SIGINT or SIGTERM: shut down.
    pub stop: bool,
    /// SIGHUP: reload certificates and the log level.
    pub reload: bool,
}
