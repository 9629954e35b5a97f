//! The sharded in-memory backend: the embedded default, for one process.
//!
//! Keys are spread over shards by hash. A decision on a key the store
//! already holds takes no shared lock and writes nothing but that key's own
//! entry: the shard's index is probed with atomic loads, the entry's lock
//! word is taken with one compare-and-swap, the pure strategy function runs
//! on the state held in the entry's atomic words, and one store releases it.
//! So threads deciding for different keys do not slow each other down:
//! entries are kept in lanes by the thread that stored them, and all
//! storage comes in blocks of whole 128-byte line pairs, so no cache line
//! is shared by two threads' entries or by an entry and the index
//! (`docs/performance.md` has the layout and the figures). The shard's mutex
//! is taken only to insert, remove or sweep keys and to grow the index, and
//! by a hit that missed without it (a new key), which then looks again
//! under it. A decision is atomic per key with no I/O at all.
//!
//! - **Keys**: a key is kept as its scope's hash and its identity packed
//!   into two words when the identity is at most 16 bytes, else as a keyed
//!   128-bit SipHash-1-3 digest of it (random keys per backend), so
//!   identities of any length and bytes take fixed room.
//! - **Expiry**: a key whose quota is full again is worth nothing: a hit
//!   that leaves it so resets its state at once, and its entry is freed by
//!   the next sweep. A shard sweeps itself when it has doubled in size since
//!   its last sweep (and, since a sweep walks every entry the shard ever
//!   made, once a quarter as many keys have come in, or at once when no
//!   entry is free), and a background thread sweeps every shard
//!   periodically (default every 5 s; it holds no strong reference and
//!   stops when the backend is dropped). Freed entries are used again, so
//!   the store stays within about twice the live keys under any flood of new
//!   identities. Its memory is not returned to the allocator until the
//!   backend is dropped: a reader may hold a reference into it at any time,
//!   so storage never moves or shrinks. It stays at its peak.
//! - **Cap**: with [`MemoryBackendBuilder::max_keys`], a shard that is full
//!   of live keys makes room for a new one by evicting the keys closest to
//!   expiry: those whose state is nearest to as good as new, so an evicted
//!   owner regains the least. It evicts at least an eighth of the shard at
//!   once, so a flood of new identities costs a scan per eighth of the cap,
//!   not per key. Limiting never switches off at the cap: every new key is
//!   decided and counted, and a flood only ever evicts keys that are about
//!   to expire anyway or the flood's own. [`MemoryBackend::evictions`]
//!   counts what was evicted.
//! - **Memory per key**: 48 bytes for the fixed-size strategies but the
//!   sliding window counter (56), plus a 4-byte index slot at a load factor
//!   of 38% to 75%. The sliding window log, whose state has no fixed size,
//!   is kept in a table under the shard's mutex, its identity inline up to
//!   24 bytes.

mod backend;
mod boxed;
mod hot;
mod segmented;
mod shard;
mod sync;
mod table;

pub use backend::{MemoryBackend, MemoryBackendBuilder};
pub use hot::HotKey;
