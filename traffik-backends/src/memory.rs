//! The sharded in-memory backend: the embedded default, for one process.
//!
//! Keys are spread over shards by hash; each shard is a mutex around one
//! table per strategy, and a decision is the pure strategy function applied
//! under the shard's lock, so it is atomic per key with no I/O at all.
//!
//! - **Expiry**: a key whose quota is full again is worth nothing and is
//!   removed: at once when a hit leaves it full, otherwise by sweeps. A shard
//!   sweeps itself when it has doubled in size since its last sweep, and a
//!   background thread sweeps every shard periodically (default every 5 s;
//!   it holds no strong reference and stops when the backend is dropped).
//!   Memory therefore stays within about twice the live keys under any
//!   flood of new identities.
//! - **Cap**: with [`MemoryBackendBuilder::max_keys`], a shard that is full
//!   of live keys refuses *new* keys with an
//!   [`ErrorKind::Capacity`](traffik_core::ErrorKind::Capacity) error, which
//!   the throttle's failure policy turns into allow, deny or an error. Keys
//!   already tracked keep working. Evicting live keys instead would hand
//!   their owners a fresh budget, which is what a flood would be after.
//! - **Memory per key**: the identity inline up to 24 bytes, a 4-byte slot
//!   of the shard's scope directory (the throttles whose keys it holds; a
//!   slot is freed with its last key, so nothing grows for ever), a 4-byte
//!   expiry and the strategy's state: 48 bytes for the fixed-size
//!   strategies but the sliding window counter (56).

mod backend;
mod boxed;
mod segmented;
mod shard;
mod sync;
mod table;

pub use backend::{MemoryBackend, MemoryBackendBuilder};
