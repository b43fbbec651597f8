//! The seam for a cross-node bus (Redis pub/sub, for example): bytes out,
//! bytes in. What the bytes say is the hub's business (`wire.rs`); the bus
//! only carries them to every other node, in the order each node sent them.
//! Only a node of a cluster has one (the `Cluster` part owns it).

/// What the bus hands the loop.
#[derive(Debug)]
pub enum BusEvent {
    /// Connected (again): this node may have missed notes meanwhile.
    Up,
    /// Disconnected: notes sent now are lost until `Up`.
    Down,
    /// A note another node sent (see `wire.rs`).
    Note(Vec<u8>),
}

/// A bus must not block the loop: a real one hands notes to its own threads
/// and rings the loop's `Waker` when one arrives. It may lose notes (while
/// down, or past its bounds): nodes notice by sequence and read back.
pub trait Bus {
    /// This node's name when the bus connects it to others (`None`: a
    /// single node, and the hub keeps no cluster state at all).
    fn node_name(&self) -> Option<&str>;
    /// Starts the bus's threads; `wake` rings the loop's `Waker` (called
    /// once, when the loop exists).
    fn start(&mut self, wake: std::sync::Arc<dyn Fn() + Send + Sync>);
    /// Sends a note to every other node; false when it was dropped.
    fn send(&mut self, note: Vec<u8>) -> bool;
    /// The next event, if one is waiting.
    fn receive(&mut self) -> Option<BusEvent>;
}

/// A single node: there is nobody to publish to and nothing to receive.
pub struct LocalOnly;

impl Bus for LocalOnly {
    fn node_name(&self) -> Option<&str> {
        None
    }
    fn start(&mut self, _: std::sync::Arc<dyn Fn() + Send + Sync>) {}
    fn send(&mut self, _: Vec<u8>) -> bool {
        false
    }
    fn receive(&mut self) -> Option<BusEvent> {
        None
    }
}
