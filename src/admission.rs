//! Who may take a descriptor: the accept-time rules that keep one source
//! address (or a crowd of them) from taking every connection slot.
//!
//! A connection is *unfinished* from `accept` until its first complete
//! request (a WebSocket upgrade completes one). Unfinished connections cost
//! a descriptor and a slab slot and give nothing back, so:
//!
//! - each address may hold at most `max_unfinished_per_addr` of them; past
//!   that a new one from the same address is closed at once (a slowloris
//!   from one address stops at its own quota, nobody else's);
//! - the server holds at most `max_conns` connections in all (below the
//!   descriptor limit, so storage and the loop keep descriptors of their
//!   own). At the cap the oldest unfinished connection is shed to make room
//!   — it had `HEAD_TIMEOUT` to send a request and did not — and only when
//!   every connection is a working one is the newcomer refused, with a 503;
//! - if `accept` still fails with `EMFILE` (something else took the
//!   descriptors), the spare descriptor kept open for that moment is closed,
//!   one connection is accepted and refused properly, and the spare is
//!   opened again (the libev/libuv trick), so the backlog is drained instead
//!   of filling up silently under an edge-triggered listener.
//!
//! The addresses of a trusted reverse proxy are exempt from the per-address
//! quota: every client behind it shares them.
//!
//! Pure bookkeeping, with no socket: the reactor asks [`Admission::admit`]
//! and reports what became of each connection.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::net::IpAddr;

use mio::Token;

/// What to do with a connection just accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it.
    Admit,
    /// Keep it, after dropping this unfinished connection (the oldest) to
    /// stay within `max_conns`.
    AdmitShedding(Token, u64),
    /// Close it: its address has its quota of unfinished connections.
    RefuseAddress,
    /// Answer 503 and close it: the server is full of working connections.
    RefuseFull,
}

pub struct Admission {
    /// Connections open, in all (the slab's length, mirrored here).
    open: usize,
    max_conns: usize,
    max_unfinished_per_addr: usize,
    /// Unfinished connections per address (entries at 0 are removed).
    unfinished: HashMap<IpAddr, u32>,
    /// Unfinished connections in all (the sum of `unfinished`).
    unfinished_total: usize,
    /// Unfinished connections in accept order, `(token, serial)`, for
    /// shedding the oldest. Entries that finished or closed are skipped
    /// lazily (checked against the caller's `still_unfinished`), and swept
    /// when they outnumber the live ones, so the list stays within twice
    /// the unfinished connections (not the open ones: ten thousand idle
    /// WebSockets leave nothing here).
    order: VecDeque<(Token, u64)>,
    /// Addresses whose connections are not counted per address.
    exempt: Vec<IpAddr>,
    /// Kept open to be closed when `accept` fails with `EMFILE`.
    spare: Option<File>,
}

/// Opens the spare descriptor.
fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

impl Admission {
    pub fn new(max_conns: usize, max_unfinished_per_addr: usize, exempt: Vec<IpAddr>) -> Admission {
        Admission {
            open: 0,
            max_conns,
            max_unfinished_per_addr,
            unfinished: HashMap::new(),
            unfinished_total: 0,
            order: VecDeque::new(),
            exempt,
            spare: open_spare(),
        }
    }

    /// The verdict on a connection from `peer`. `still_unfinished` tells
    /// whether a listed `(token, serial)` is still that unfinished
    /// connection (the reactor owns the connections).
    pub fn admit(
        &mut self,
        peer: IpAddr,
        mut still_unfinished: impl FnMut(Token, u64) -> bool,
    ) -> Verdict {
        if self.order.len() > 2 * self.unfinished_total + 64 {
            self.order.retain(|&(t, s)| still_unfinished(t, s));
        }
        if !self.exempt.contains(&peer)
            && self.unfinished.get(&peer).copied().unwrap_or(0) as usize
                >= self.max_unfinished_per_addr
        {
            return Verdict::RefuseAddress;
        }
        if self.open < self.max_conns {
            return Verdict::Admit;
        }
        while let Some((token, serial)) = self.order.pop_front() {
            if still_unfinished(token, serial) {
                return Verdict::AdmitShedding(token, serial);
            }
        }
        Verdict::RefuseFull
    }

    /// A connection was admitted (and is unfinished).
    pub fn opened(&mut self, peer: IpAddr, token: Token, serial: u64) {
        self.open += 1;
        *self.unfinished.entry(peer).or_insert(0) += 1;
        self.unfinished_total += 1;
        self.order.push_back((token, serial));
    }

    /// A connection from `peer` completed its first request.
    pub fn finished(&mut self, peer: IpAddr) {
        if let Some(n) = self.unfinished.get_mut(&peer) {
            *n -= 1;
            self.unfinished_total -= 1;
            if *n == 0 {
                self.unfinished.remove(&peer);
            }
        }
    }

    /// A connection closed; `unfinished` if it never completed a request.
    pub fn closed(&mut self, peer: IpAddr, unfinished: bool) {
        self.open -= 1;
        if unfinished {
            self.finished(peer);
        }
    }

    /// `accept` failed with `EMFILE`/`ENFILE`: gives up the spare
    /// descriptor so one connection can be accepted and refused. Returns
    /// whether there was one to give.
    pub fn release_spare(&mut self) -> bool {
        self.spare.take().is_some()
    }

    /// Takes the spare descriptor again after the refusal.
    pub fn restore_spare(&mut self) {
        if self.spare.is_none() {
            self.spare = open_spare();
        }
    }

    /// Connections open now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.open
    }

    pub fn max_conns(&self) -> usize {
        self.max_conns
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the default soft limit
/// of 1024 is far below what a chat server needs, and raising it needs no
/// privilege). Returns the soft limit in force afterwards.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    // `rlim_t` is `u64` on 64-bit Linux but not everywhere.
    #[allow(clippy::unnecessary_cast)]
    let soft = lim.rlim_cur as u64;
    soft
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        Ipv4Addr::new(127, 0, 0, last).into()
    }

    /// One address stops at its quota of unfinished connections; another
    /// address, a finished connection, and an exempt proxy are not held to it.
    #[test]
    fn unfinished_connections_are_capped_per_address() {
        let mut a = Admission::new(100, 2, vec![ip(9)]);
        for t in 0..2 {
            assert_eq!(a.admit(ip(3), |_, _| true), Verdict::Admit);
            a.opened(ip(3), Token(t), t as u64);
        }
        assert_eq!(a.admit(ip(3), |_, _| true), Verdict::RefuseAddress);
        assert_eq!(a.admit(ip(1), |_, _| true), Verdict::Admit);
        a.finished(ip(3));
        assert_eq!(a.admit(ip(3), |_, _| true), Verdict::Admit);
        for t in 10..20 {
            assert_eq!(a.admit(ip(9), |_, _| true), Verdict::Admit, "exempt");
            a.opened(ip(9), Token(t), t as u64);
        }
    }

    /// At `max_conns` the oldest connection still unfinished is shed for
    /// the newcomer; when none is left, the newcomer is refused.
    #[test]
    fn a_full_server_sheds_the_oldest_unfinished() {
        let mut a = Admission::new(3, 10, vec![]);
        for t in 0..3 {
            a.opened(ip(3), Token(t), t as u64);
        }
        // Token 0 finished its request; token 1 is the oldest unfinished.
        a.finished(ip(3));
        let unfinished = |t: Token, _| t != Token(0);
        assert_eq!(
            a.admit(ip(1), unfinished),
            Verdict::AdmitShedding(Token(1), 1)
        );
        a.closed(ip(3), true);
        a.opened(ip(1), Token(3), 3);
        assert_eq!(a.open(), 3);
        let none = |_: Token, _| false;
        assert_eq!(a.admit(ip(1), none), Verdict::RefuseFull);
    }

    /// Connections that finished their first request leave the shedding
    /// list when it is swept, so it stays bounded by the unfinished ones
    /// however many working connections are open; unfinished ones are
    /// never swept away (they stay sheddable).
    #[test]
    fn shedding_list_is_bounded_by_unfinished() {
        let mut a = Admission::new(100_000, 10, vec![]);
        let unfinished = |t: Token, _| t.0 >= 9_990;
        for t in 0..10_000 {
            assert_eq!(a.admit(ip((t % 200) as u8 + 1), unfinished), Verdict::Admit);
            a.opened(ip((t % 200) as u8 + 1), Token(t), t as u64);
            if t < 9_990 {
                a.finished(ip((t % 200) as u8 + 1));
            }
        }
        assert!(a.order.len() <= 2 * 10 + 64 + 1, "{}", a.order.len());
        a.max_conns = a.open();
        assert_eq!(
            a.admit(ip(250), unfinished),
            Verdict::AdmitShedding(Token(9_990), 9_990)
        );
    }

    /// The spare descriptor can be given up once and taken back.
    #[test]
    fn spare_descriptor_round_trip() {
        let mut a = Admission::new(1, 1, vec![]);
        assert!(a.release_spare());
        assert!(!a.release_spare());
        a.restore_spare();
        assert!(a.release_spare());
    }
}
