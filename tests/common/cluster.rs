//! A test cluster: `hubbub` nodes on one PostgreSQL and one Redis (the
//! shared ones of `services`, or a Redis a test brings), on a fresh
//! database and channel, returned once every node hears every other. What
//! `tests/cluster.rs` (the contract across nodes) and
//! `tests/cluster_trust.rs` (what the bus refuses) both start from.

use std::thread;
use std::time::{Duration, Instant};

use super::Server;
use super::services::{Postgres, Redis, SharedPg, SharedRedis, unique_channel};

/// How long cross-node effects may take in these tests (the bus is
/// loopback: milliseconds; the bound only turns a hang into a failure).
pub const CROSS: Duration = Duration::from_secs(10);

/// Every test node's cluster key (32 bytes, the least a node takes).
pub const KEY: &str = "the cluster tests' key, 32 bytes";

/// A node of a test cluster, with [`KEY`].
pub fn node(pg: &str, redis: &str, channel: &str, name: &str) -> Server {
    node_with_key(pg, redis, channel, name, KEY)
}

/// A node with `key`, given as `HUBBUB_CLUSTER_KEY` (the flag has tests of
/// its own).
pub fn node_with_key(pg: &str, redis: &str, channel: &str, name: &str, key: &str) -> Server {
    Server::builder()
        .env("HUBBUB_CLUSTER_KEY", key)
        .arg("--postgres")
        .arg(pg)
        .arg("--redis")
        .arg(redis)
        .arg("--redis-channel")
        .arg(channel)
        .arg("--node-id")
        .arg(name)
        .arg("--presence-grace")
        .arg("0")
        .rate_limit(0)
        .start()
}

/// Nodes on a fresh database and channel.
pub struct Cluster {
    pub nodes: Vec<Server>,
    pub pg: String,
    pub redis: String,
    pub channel: String,
    _pg: SharedPg,
    _redis: Option<SharedRedis>,
}

impl Cluster {
    /// `n` nodes on the shared PostgreSQL and Redis, formed.
    pub fn start(n: usize) -> Cluster {
        let redis = Redis::shared();
        let url = redis.url().to_string();
        Cluster::on(&url, Some(redis), n)
    }

    /// `n` nodes on the Redis at `redis` (kept running by `keep`, or by
    /// the test), formed.
    pub fn on(redis: &str, keep: Option<SharedRedis>, n: usize) -> Cluster {
        Cluster::on_channel(redis, keep, unique_channel("cluster"), n)
    }

    /// The same on a channel the test chose.
    pub fn on_channel(
        redis: &str,
        keep: Option<SharedRedis>,
        channel: String,
        n: usize,
    ) -> Cluster {
        let pg = Postgres::shared();
        let mut c = Cluster {
            nodes: Vec::new(),
            pg: pg.url().to_string(),
            redis: redis.to_string(),
            channel,
            _pg: pg,
            _redis: keep,
        };
        for i in 0..n {
            c.add_node(&format!("n{}", i + 1));
        }
        c.wait_formed();
        c
    }

    /// One more node (the caller waits for it to be heard).
    pub fn add_node(&mut self, name: &str) {
        self.nodes
            .push(node(&self.pg, &self.redis, &self.channel, name));
    }

    /// Until every node counts every other as a peer.
    pub fn wait_formed(&self) {
        let want = self.nodes.len() - 1;
        for n in &self.nodes {
            wait_until(CROSS, "the cluster to form", || peers(n) == want);
        }
    }

    /// Signs `name` up on the first node and returns its token once every
    /// node has heard of the user. (A WebSocket upgrade on a node the
    /// signup's note has not reached yet is refused as an unknown user: a
    /// window of bus latency, admitted in the README; these tests are about
    /// what follows, not about that window.)
    pub fn token(&self, name: &str) -> String {
        let token = self.nodes[0].token(name);
        self.wait_known(&token);
        token
    }

    /// Until every node accepts `token` (has heard of its user).
    pub fn wait_known(&self, token: &str) {
        for n in &self.nodes {
            wait_until(CROSS, "the signup to reach every node", || {
                n.get("/api/users", Some(token)).status == 200
            });
        }
    }
}

/// A counter or gauge from a node's `/metrics` (0 when absent).
pub fn metric(n: &Server, name: &str) -> u64 {
    let text = n.get("/metrics", None).text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `hubbub_cluster_peers` of a node.
pub fn peers(n: &Server) -> usize {
    metric(n, "hubbub_cluster_peers") as usize
}

/// Until `ok`, checked every 50 ms; fails the test past `within`.
pub fn wait_until(within: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}
