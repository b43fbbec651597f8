//! The bytes under one connection: a plain `TcpStream`, or a rustls
//! `ServerConnection` over one. `conn.rs` reads plaintext into the loop's
//! scratch buffer and writes plaintext from its queue of shared frames
//! through this, and nothing above `conn.rs` knows which it is.
//!
//! Plain sockets pass straight through (one `read`, one `writev` of the
//! queued frames: the fast path stays what it was). TLS is rustls's
//! buffered API driven by readiness, as its own mio example drives it:
//! records are read until the socket would block, decrypted, and handed
//! out as plaintext; plaintext is taken only while rustls's bounded send
//! buffer has room ([`TLS_SEND_BUFFER`]), so a socket that stops draining
//! pushes back on the connection's own queue, where the output limits are.
//! Handshake messages produced by a read are pending ciphertext; the
//! reactor asks [`Transport::wants_write`] after each read and flushes.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use rustls::ServerConnection;

use crate::config::TLS_SEND_BUFFER;

pub enum Transport {
    Plain(TcpStream),
    /// Boxed: a rustls session is about a kilobyte, and most deployments
    /// run plain behind a proxy.
    Tls(Box<Tls>),
}

pub struct Tls {
    socket: TcpStream,
    session: ServerConnection,
}

impl Transport {
    /// TLS over `socket` with a fresh server session.
    pub fn tls(socket: TcpStream, mut session: ServerConnection) -> Transport {
        session.set_buffer_limit(Some(TLS_SEND_BUFFER));
        Transport::Tls(Box::new(Tls { socket, session }))
    }

    /// The socket, to register and deregister with the `Poll`.
    pub fn socket_mut(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &mut t.socket,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Reads plaintext into `buf`: `Ok(0)` is the end of the stream (a FIN,
    /// or TLS's `close_notify`), `WouldBlock` means nothing more for now.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }

    /// Takes plaintext from `bufs` (in order); returns how much it took.
    /// `WouldBlock` when it could take nothing.
    pub fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write_vectored(bufs),
            Transport::Tls(t) => t.write_vectored(bufs),
        }
    }

    /// Pushes out what the transport itself holds (TLS records already
    /// encrypted). `Ok(true)` when nothing is left.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(t) => t.push_records(),
        }
    }

    /// The transport has bytes of its own to send (a handshake flight, an
    /// alert): the reactor lists the connection for the flush pass.
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t.session.wants_write(),
        }
    }

    /// Our side is done: TLS says `close_notify` (best effort: the queue
    /// just drained, so the 31-byte alert fits the socket buffer), then FIN.
    pub fn shutdown_write(&mut self) {
        if let Transport::Tls(t) = self {
            t.session.send_close_notify();
            let _ = t.push_records();
        }
        // The peer may already be gone; nothing to do about it here.
        let _ = self.socket_mut().shutdown(Shutdown::Write);
    }
}

impl Tls {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // Plaintext already decrypted goes first: rustls refuses more
            // records while its plaintext buffer is full.
            match self.session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.session.read_tls(&mut self.socket) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.session.process_new_packets() {
                // rustls queued an alert saying why; send it before the close.
                let _ = self.push_records();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Records first, so rustls's buffer has room and stays bounded.
        if !self.push_records()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.session.writer().write_vectored(bufs)?;
        // Out now if the socket takes it; the rest goes with the next call
        // or `flush_pending`.
        self.push_records()?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Writes rustls's pending records until the socket would block.
    fn push_records(&mut self) -> io::Result<bool> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}
