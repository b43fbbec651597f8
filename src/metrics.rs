//! Counters for `/metrics`, in Prometheus text format. Plain integers owned by
//! the loop: bumping one is an add, never an allocation or a lock.
//!
//! Rendering is O(1) in the server's size: every gauge is a number someone
//! keeps up to date as things happen (the hub counts sessions, users online
//! and rooms; the storage queue keeps its depth; the hashing pool its jobs),
//! never a walk over connections, users or rooms, so a burst of pipelined
//! `GET /metrics` costs what that many small responses cost.

use std::fmt::Write;

use crate::config::VERSION;

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_accepted: u64,
    pub http_requests: u64,
    pub ws_upgrades: u64,
    pub ws_frames_in: u64,
    /// Frames queued to WebSocket connections (every copy counts).
    pub ws_frames_out: u64,
    /// Chat and private messages queued to a recipient.
    pub deliveries: u64,
    pub messages_stored: u64,
    pub slow_consumer_cuts: u64,
    pub rate_limited: u64,
    /// Connections closed at accept: an address over its quota of
    /// unfinished connections, or a full server.
    pub connections_refused: u64,
    /// Signups and logins refused 429 by their address's hash-work budget
    /// or queue share.
    pub auth_throttled_address: u64,
    /// Logins refused 429 because their username had too many failures.
    pub auth_throttled_username: u64,
    /// Password jobs dropped unhashed: their connection had gone.
    pub hash_jobs_dropped: u64,
    /// `POST` bodies refused 415 (not `application/json`).
    pub http_unsupported_media: u64,
    /// WebSocket upgrades refused 403 for their `Origin`.
    pub ws_refused_origin: u64,
    /// WebSocket upgrades refused 429: the user holds `--max-conns-per-user`.
    pub ws_refused_user_cap: u64,
    /// Pushes a push service accepted.
    pub push_sent: u64,
    /// Tries that failed and will be tried again (429, 5xx, no connection).
    pub push_retried: u64,
    /// Subscriptions a push service said are gone (404, 410): deleted.
    pub push_gone: u64,
    /// Pushes that failed for good (tries used up, or refused).
    pub push_failed: u64,
    /// Pushes dropped before a try: a full queue or pacing table, or
    /// storage too busy to read the user's subscriptions.
    pub push_dropped: u64,
}

/// Gauges read at render time.
pub struct Gauges {
    pub connections_open: usize,
    pub ws_connections: usize,
    pub store_queue_depth: usize,
    pub hash_in_flight: usize,
    pub users_online: usize,
    pub rooms: usize,
    /// Password jobs waiting for a hashing thread (part of `hash_in_flight`).
    pub hash_queued: usize,
    /// Token buckets the login throttle keeps (addresses and usernames).
    pub throttle_entries: usize,
    /// 1 while the database is unreachable.
    pub store_down: usize,
    /// 1 while this cluster node's bus is down.
    pub bus_down: usize,
    /// Other cluster nodes heard from recently.
    pub peers: usize,
    /// Sessions that ended before their tokens expired (kept until then).
    pub sessions_ended: usize,
    /// WebSocket tickets remembered as used (until they expire).
    pub ws_tickets_used: usize,
    /// Unsent output of every connection (what the server-wide reply
    /// budget counts).
    pub output_queued: usize,
    /// Notes from the bus turned away (forged, malformed, stale, replayed).
    pub notes_rejected: u64,
}

impl Metrics {
    pub fn render(&self, g: &Gauges) -> String {
        let mut s = String::with_capacity(2048);
        let counters: [(&str, &str, u64); 22] = [
            (
                "hubbub_connections_accepted_total",
                "TCP connections accepted.",
                self.connections_accepted,
            ),
            (
                "hubbub_http_requests_total",
                "HTTP requests parsed.",
                self.http_requests,
            ),
            (
                "hubbub_ws_upgrades_total",
                "WebSocket upgrades completed.",
                self.ws_upgrades,
            ),
            (
                "hubbub_ws_frames_in_total",
                "WebSocket data frames received.",
                self.ws_frames_in,
            ),
            (
                "hubbub_ws_frames_out_total",
                "WebSocket frames queued for sending.",
                self.ws_frames_out,
            ),
            (
                "hubbub_deliveries_total",
                "Chat messages queued to a recipient.",
                self.deliveries,
            ),
            (
                "hubbub_messages_stored_total",
                "Messages durably committed.",
                self.messages_stored,
            ),
            (
                "hubbub_slow_consumer_cuts_total",
                "Connections cut for unsent output.",
                self.slow_consumer_cuts,
            ),
            (
                "hubbub_rate_limited_total",
                "Frames dropped by the rate limit.",
                self.rate_limited,
            ),
            (
                "hubbub_connections_refused_total",
                "Connections closed at accept (per-address quota or a full server).",
                self.connections_refused,
            ),
            (
                "hubbub_auth_throttled_address_total",
                "Signups and logins refused 429 by their address's hashing budget.",
                self.auth_throttled_address,
            ),
            (
                "hubbub_auth_throttled_username_total",
                "Logins refused 429 after too many failures for their username.",
                self.auth_throttled_username,
            ),
            (
                "hubbub_hash_jobs_dropped_total",
                "Password jobs dropped unhashed because their connection had gone.",
                self.hash_jobs_dropped,
            ),
            (
                "hubbub_http_unsupported_media_total",
                "POST bodies refused 415 for not being application/json.",
                self.http_unsupported_media,
            ),
            (
                "hubbub_ws_refused_origin_total",
                "WebSocket upgrades refused 403 for their Origin.",
                self.ws_refused_origin,
            ),
            (
                "hubbub_ws_refused_user_cap_total",
                "WebSocket upgrades refused 429 at the per-user connection cap.",
                self.ws_refused_user_cap,
            ),
            (
                "hubbub_cluster_notes_rejected_total",
                "Notes from the bus dropped: failed verification, malformed, stale or replayed.",
                g.notes_rejected,
            ),
            (
                "hubbub_push_sent_total",
                "Web Push messages a push service accepted.",
                self.push_sent,
            ),
            (
                "hubbub_push_retried_total",
                "Web Push tries that failed and were tried again.",
                self.push_retried,
            ),
            (
                "hubbub_push_gone_total",
                "Push subscriptions deleted because their push service said they are gone.",
                self.push_gone,
            ),
            (
                "hubbub_push_failed_total",
                "Web Push messages that failed for good.",
                self.push_failed,
            ),
            (
                "hubbub_push_dropped_total",
                "Web Push messages dropped before a try (a full queue or busy storage).",
                self.push_dropped,
            ),
        ];
        for (name, help, v) in counters {
            let _ = write!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        }
        let gauges: [(&str, &str, usize); 14] = [
            (
                "hubbub_connections_open",
                "Open TCP connections.",
                g.connections_open,
            ),
            (
                "hubbub_ws_connections",
                "Open WebSocket connections.",
                g.ws_connections,
            ),
            (
                "hubbub_store_queue_depth",
                "Requests waiting for the storage thread.",
                g.store_queue_depth,
            ),
            (
                "hubbub_hash_jobs_in_flight",
                "Password jobs queued or running.",
                g.hash_in_flight,
            ),
            (
                "hubbub_users_online",
                "Users with at least one WebSocket.",
                g.users_online,
            ),
            ("hubbub_rooms", "Rooms known to the hub.", g.rooms),
            (
                "hubbub_hash_jobs_queued",
                "Password jobs waiting for a hashing thread.",
                g.hash_queued,
            ),
            (
                "hubbub_auth_throttle_entries",
                "Token buckets kept by the login throttle.",
                g.throttle_entries,
            ),
            (
                "hubbub_store_down",
                "1 while the database is unreachable (writes answer busy).",
                g.store_down,
            ),
            (
                "hubbub_bus_down",
                "1 while this cluster node's bus is unreachable.",
                g.bus_down,
            ),
            (
                "hubbub_cluster_peers",
                "Other cluster nodes heard from recently.",
                g.peers,
            ),
            (
                "hubbub_sessions_ended",
                "Ended sessions whose tokens have not expired (refused in memory).",
                g.sessions_ended,
            ),
            (
                "hubbub_ws_tickets_used",
                "WebSocket tickets remembered as used until they expire.",
                g.ws_tickets_used,
            ),
            (
                "hubbub_output_queued_bytes",
                "Bytes queued for connections and not yet written.",
                g.output_queued,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        }
        // The Prometheus convention for "which build is this": a constant 1
        // whose label carries the version.
        let _ = write!(
            s,
            "# HELP hubbub_build_info The running version.\n# TYPE hubbub_build_info gauge\n\
             hubbub_build_info{{version=\"{VERSION}\"}} 1\n"
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every series has HELP and TYPE lines and its value.
    #[test]
    fn renders_prometheus_text() {
        let m = Metrics {
            deliveries: 42,
            ..Metrics::default()
        };
        let g = Gauges {
            connections_open: 3,
            ws_connections: 2,
            store_queue_depth: 0,
            hash_in_flight: 0,
            users_online: 1,
            rooms: 1,
            hash_queued: 0,
            throttle_entries: 0,
            store_down: 0,
            bus_down: 0,
            peers: 0,
            sessions_ended: 0,
            ws_tickets_used: 0,
            output_queued: 0,
            notes_rejected: 0,
        };
        let text = m.render(&g);
        assert!(
            text.contains("# TYPE hubbub_deliveries_total counter\nhubbub_deliveries_total 42\n")
        );
        assert!(text.contains("# TYPE hubbub_connections_open gauge\nhubbub_connections_open 3\n"));
        assert!(text.contains(&format!("\nhubbub_build_info{{version=\"{VERSION}\"}} 1\n")));
        assert_eq!(text.lines().filter(|l| l.starts_with("# HELP")).count(), 37);
    }
}
