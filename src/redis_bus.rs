//! The hub's [`Bus`] over Redis pub/sub: one channel for the whole cluster,
//! carried by a [`RedisLink`] (its own threads; the loop only queues and
//! drains). What the notes say is the hub's (`hub/wire.rs`); this file only
//! maps the link's events onto the seam.
//!
//! One channel rather than one per room: every node needs every room's
//! sequence anyway (to notice a gap it must see the numbers), presence
//! notes concern every node, and a single subscription cannot miss a room
//! subscribed too late. The cost is that every node receives all traffic.

use std::sync::Arc;

use crate::hub::{Bus, BusEvent};
use crate::redis::{LinkEvent, RedisLink};

pub struct RedisBus {
    url: String,
    /// TLS roots for `rediss://` (`--redis-ca`); `None`: the system's.
    tls: Option<Arc<rustls::ClientConfig>>,
    channel: String,
    node: String,
    /// Started with the loop's waker (`Bus::start`).
    link: Option<RedisLink>,
}

impl RedisBus {
    /// Every node of a cluster uses the same `url` and `channel` (the
    /// `--redis-channel` option). The URL is checked now, so a bad one
    /// stops the server at start; the link connects when the loop starts
    /// the bus.
    pub fn new(
        url: &str,
        channel: &str,
        node: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<RedisBus, String> {
        crate::redis::parse_url(url)?;
        Ok(RedisBus {
            url: url.to_string(),
            tls,
            channel: channel.to_string(),
            node: node.to_string(),
            link: None,
        })
    }
}

impl Bus for RedisBus {
    fn node_name(&self) -> Option<&str> {
        Some(&self.node)
    }

    fn start(&mut self, wake: Arc<dyn Fn() + Send + Sync>) {
        match RedisLink::start(&self.url, &self.channel, self.tls.clone(), wake) {
            Ok(link) => self.link = Some(link),
            Err(e) => log::error!("cluster: cannot use {}: {e}", self.url),
        }
    }

    fn send(&mut self, note: Vec<u8>) -> bool {
        self.link.as_ref().is_some_and(|l| l.publish(note))
    }

    fn receive(&mut self) -> Option<BusEvent> {
        Some(match self.link.as_ref()?.try_recv()? {
            LinkEvent::Up => BusEvent::Up,
            LinkEvent::Down => BusEvent::Down,
            LinkEvent::Message(bytes) => BusEvent::Note(bytes),
        })
    }
}
