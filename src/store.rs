//! The store every Envoy worker shares: proxy-wasm shared data in the wasm filter, a process-wide
//! map in the dynamic module, memory in tests.
//!
//! Shared data is a key-value map per `vm_id` per Envoy process with compare-and-swap writes and
//! no TTL or atomic increment, so every counter update is a bounded read-modify-write loop
//! ([`update`]). Durable, multi-replica storage would be another implementation of [`Store`].
//!
//! State shared across Envoy processes lives in Redis, reached through webdis: [`remote`] is that
//! protocol, [`tick`] the process's periodic job with it.

pub mod remote;
pub mod tick;

use std::sync::{Arc, Mutex, MutexGuard};

use hashbrown::HashMap;

/// A value and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub cas: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Someone else wrote the key since it was read.
    Conflict,
    /// The host refused the operation.
    Unavailable,
}

pub trait Store {
    fn get(&self, key: &str) -> Option<Versioned>;
    /// Writes `value` if the key is still at version `cas` (`None`: only if the key is absent
    /// or unconditionally, as the host defines; callers pass the version they read).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
    /// Which data this store holds, for a worker's memory of what it found there: every view of
    /// the same data says the same (the host's one shared data says 0); each other in-memory
    /// store (a test's) its own.
    fn identity(&self) -> u64 {
        0
    }
}

/// How many times a read-modify-write is retried under contention before giving up. Each try is
/// a few microseconds; contention beyond this means something is wrong, and the caller fails safe.
pub const MAX_TRIES: usize = 64;

/// Applies `change` to the current value (empty when absent) until the write wins. `change`
/// returns the new value and a result, or an error that stops without writing.
pub fn update<T, E>(
    store: &dyn Store,
    key: &str,
    mut change: impl FnMut(&[u8]) -> Result<(Vec<u8>, T), E>,
) -> Result<T, UpdateError<E>> {
    for _ in 0..MAX_TRIES {
        let current = store.get(key);
        let (bytes, cas) = match &current {
            Some(v) => (v.value.as_slice(), Some(v.cas)),
            None => (&[][..], None),
        };
        let (next, out) = change(bytes).map_err(UpdateError::Refused)?;
        match store.set(key, &next, cas) {
            Ok(()) => return Ok(out),
            Err(StoreError::Conflict) => continue,
            Err(StoreError::Unavailable) => return Err(UpdateError::Unavailable),
        }
    }
    Err(UpdateError::Contention)
}

#[derive(Debug, PartialEq, Eq)]
pub enum UpdateError<E> {
    Refused(E),
    Contention,
    Unavailable,
}

/// A record of `N` little-endian u64 counters behind a version byte: the layout of the usage and
/// health records, cheap to read and write on every request.
pub fn encode_u64s(version: u8, values: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + values.len() * 8);
    out.push(version);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Decodes [`encode_u64s`]; an absent or unreadable record (or another version) reads as zeros,
/// and a shorter one (an older layout) as zeros for the fields it lacks.
pub fn decode_u64s<const N: usize>(version: u8, bytes: &[u8]) -> [u64; N] {
    let mut v = [0u64; N];
    if bytes.first() != Some(&version) {
        return v;
    }
    for (i, slot) in v.iter_mut().enumerate() {
        if let Some(chunk) = bytes.get(1 + i * 8..9 + i * 8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *slot = u64::from_le_bytes(b);
        }
    }
    v
}

/// A store shared by every thread of a process, with shared data's semantics (a write at a stale
/// version conflicts; a write to an absent key succeeds). Envoy's dynamic modules keep it in a
/// static, where all worker threads see it; tests use it as an in-memory host's shared data.
/// Keys are spread over shards so that workers updating different records rarely wait.
#[derive(Debug)]
pub struct ProcessStore {
    shards: [Mutex<HashMap<String, Versioned>>; SHARDS],
    id: u64,
}

const SHARDS: usize = 16;

impl Default for ProcessStore {
    fn default() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        ProcessStore {
            shards: std::array::from_fn(|_| Mutex::default()),
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

impl ProcessStore {
    fn shard(&self, key: &str) -> Option<MutexGuard<'_, HashMap<String, Versioned>>> {
        // FNV-1a: stable and cheap for short keys.
        let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        // A poisoned lock means a thread panicked while holding it; the map itself is still
        // whole (every write is one insert), so it stays usable.
        let shard = self.shards.get((h % SHARDS as u64) as usize)?;
        Some(
            shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    pub fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for shard in &self.shards {
            let map = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            keys.extend(map.keys().cloned());
        }
        keys
    }
}

impl Store for ProcessStore {
    fn get(&self, key: &str) -> Option<Versioned> {
        self.shard(key)?.get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut map = self.shard(key).ok_or(StoreError::Unavailable)?;
        let next = match (map.get(key), cas) {
            (Some(cur), Some(c)) if cur.cas != c => return Err(StoreError::Conflict),
            (Some(cur), _) => cur.cas.wrapping_add(1).max(1),
            (None, _) => 1,
        };
        map.insert(
            key.to_string(),
            Versioned {
                value: value.to_vec(),
                cas: next,
            },
        );
        Ok(())
    }
}

/// An in-memory store shared by clones (as workers share data), for tests and tools.
#[derive(Clone, Default, Debug)]
pub struct MemoryStore {
    inner: Arc<ProcessStore>,
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Option<Versioned> {
        self.inner.get(key)
    }

    fn identity(&self) -> u64 {
        self.inner.id
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.inner.set(key, value, cas)
    }
}

impl MemoryStore {
    pub fn keys(&self) -> Vec<String> {
        self.inner.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_conflicts_and_update_retries() {
        let s = MemoryStore::default();
        s.set("k", b"1", None).unwrap();
        let v = s.get("k").unwrap();
        s.set("k", b"2", Some(v.cas)).unwrap();
        assert_eq!(s.set("k", b"3", Some(v.cas)), Err(StoreError::Conflict));

        // A writer that races once: the first attempt conflicts, the retry wins.
        let mut raced = false;
        let out = update::<_, ()>(&s, "k", |cur| {
            if !raced {
                raced = true;
                s.set("k", b"9", None).unwrap();
            }
            let n: u32 = std::str::from_utf8(cur).unwrap().parse().unwrap();
            Ok(((n + 1).to_string().into_bytes(), n))
        })
        .unwrap();
        assert_eq!(out, 9);
        assert_eq!(s.get("k").unwrap().value, b"10");
        assert_eq!(
            update::<(), _>(&s, "k", |_| Err("no")),
            Err(UpdateError::Refused("no"))
        );
    }

    /// Four threads, as four Envoy workers, each adding to one counter with `update`: no
    /// increment is lost.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn process_store_loses_no_update_across_threads() {
        let store = Arc::new(ProcessStore::default());
        // The record exists before traffic, as the filter makes sure (`quota::ensure_record`):
        // a write to an absent key succeeds at any version, so two updates racing to create it
        // could lose one. (Without this line the test fails now and then, losing a few dozen.)
        store.set("counter", &encode_u64s(1, &[0]), None).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut done = 0;
                    while done < 2_000 {
                        let r = update::<_, ()>(&*store, "counter", |cur| {
                            let n = decode_u64s::<1>(1, cur)[0];
                            Ok((encode_u64s(1, &[n + 1]), ()))
                        });
                        // Contention may exhaust the bounded retries; the caller tries again.
                        if r.is_ok() {
                            done += 1;
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let v = store.get("counter").unwrap();
        assert_eq!(decode_u64s::<1>(1, &v.value)[0], 8_000);
        assert_eq!(store.keys(), vec!["counter".to_string()]);
    }
}
