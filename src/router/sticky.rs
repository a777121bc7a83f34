//! Which deployment holds each Responses API response that passed through to a deployment serving
//! the API itself (OpenAI, Azure): a later turn naming it (`previous_response_id`) goes back
//! there, and `GET`/`DELETE /v1/responses/{id}` are asked of it.
//!
//! Shared data has no delete, no TTL and no key listing, so the mapping lives in a fixed table of
//! buckets, as [`super::attempts`] keeps its ring: a response id hashes to one bucket, which
//! holds at most [`PER_BUCKET`] entries, the oldest dropped for a new one. An entry older than
//! [`MAX_AGE_SECS`] (OpenAI keeps a stored response 30 days) is never returned and is dropped on
//! the bucket's next write. At most [`BUCKETS`] × [`PER_BUCKET`] responses are remembered per
//! Envoy process (about 200 bytes each, some 13 MB at most); a forgotten one is routed as any
//! request is, and the deployment that does not hold it answers 404.

use serde::{Deserialize, Serialize};

use crate::store::{update, Store};

/// Buckets in the table.
pub const BUCKETS: u64 = 4096;
/// Responses a bucket remembers; the oldest goes for a new one.
pub const PER_BUCKET: usize = 16;
/// How long a response is remembered: OpenAI keeps stored responses 30 days.
pub const MAX_AGE_SECS: u64 = 30 * 24 * 3600;
/// The longest response id remembered (OpenAI's are about 50 characters).
pub const MAX_ID_LEN: usize = 256;

/// Where a response is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The response's id.
    #[serde(rename = "i")]
    pub id: String,
    /// The deployment that made it (`model_info.id`, or the generated id).
    #[serde(rename = "d")]
    pub deployment: String,
    /// The model name (alias) the client asked for: the response is relayed under it, and a key
    /// may read it only if it may use that model.
    #[serde(rename = "a")]
    pub alias: String,
    /// When it was made, Unix seconds.
    #[serde(rename = "t")]
    pub at: u64,
}

fn bucket(id: &str) -> u64 {
    // FNV-1a: spreads the ids' random tails over the table.
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h % BUCKETS
}

pub fn bucket_key(id: &str) -> String {
    format!("tollgate.response.{}", bucket(id))
}

/// A bucket's entries; an unreadable one (garbage, another layout) reads as empty.
fn decode(bytes: &[u8]) -> Vec<Held> {
    serde_json::from_slice(bytes).unwrap_or_default()
}

fn fresh(h: &Held, now_secs: u64) -> bool {
    now_secs.saturating_sub(h.at) < MAX_AGE_SECS
}

/// Whether `id` can be remembered: a non-empty id of letters, digits, `_`, `-` and `.` (OpenAI's
/// and Azure's are `resp_` and hex) starting with a letter or digit, not too long, so it goes back into a path as it is.
pub fn valid_id(id: &str) -> bool {
    id.len() <= MAX_ID_LEN
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Remembers that `held.id` is held by `held.deployment`; false when the store refused.
pub fn remember(store: &dyn Store, held: Held) -> bool {
    if !valid_id(&held.id) {
        return false;
    }
    let now = held.at;
    update::<_, ()>(store, &bucket_key(&held.id), |cur| {
        let mut entries = decode(cur);
        entries.retain(|e| e.id != held.id && fresh(e, now));
        entries.push(held.clone());
        // Oldest first: keep the newest `PER_BUCKET`.
        entries.sort_by_key(|e| e.at);
        let excess = entries.len().saturating_sub(PER_BUCKET);
        entries.drain(..excess);
        Ok((serde_json::to_vec(&entries).unwrap_or_default(), ()))
    })
    .is_ok()
}

/// Where `id` is held, if it is remembered and not expired.
pub fn recall(store: &dyn Store, id: &str, now_secs: u64) -> Option<Held> {
    if !valid_id(id) {
        return None;
    }
    let v = store.get(&bucket_key(id))?;
    decode(&v.value)
        .into_iter()
        .find(|e| e.id == id && fresh(e, now_secs))
}

/// Forgets `id` (it was deleted).
pub fn forget(store: &dyn Store, id: &str) {
    if !valid_id(id) {
        return;
    }
    let _ = update::<_, ()>(store, &bucket_key(id), |cur| {
        let mut entries = decode(cur);
        let before = entries.len();
        entries.retain(|e| e.id != id);
        if entries.len() == before {
            return Err(());
        }
        Ok((serde_json::to_vec(&entries).unwrap_or_default(), ()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn held(id: &str, d: &str, at: u64) -> Held {
        Held {
            id: id.into(),
            deployment: d.into(),
            alias: "gpt".into(),
            at,
        }
    }

    #[test]
    fn remembers_recalls_and_forgets() {
        let s = MemoryStore::default();
        assert!(remember(&s, held("resp_1", "east", 100)));
        assert!(remember(&s, held("resp_2", "west", 100)));
        assert_eq!(recall(&s, "resp_1", 101).unwrap().deployment, "east");
        assert_eq!(recall(&s, "resp_2", 101).unwrap().deployment, "west");
        assert!(recall(&s, "resp_3", 101).is_none());
        // The same id again moves (it is one entry, the newest).
        assert!(remember(&s, held("resp_1", "west", 102)));
        assert_eq!(recall(&s, "resp_1", 103).unwrap().deployment, "west");
        forget(&s, "resp_1");
        assert!(recall(&s, "resp_1", 103).is_none());
        assert_eq!(recall(&s, "resp_2", 103).unwrap().deployment, "west");
    }

    #[test]
    fn expires_after_thirty_days() {
        let s = MemoryStore::default();
        assert!(remember(&s, held("resp_old", "east", 1_000)));
        assert!(recall(&s, "resp_old", 1_000 + MAX_AGE_SECS - 1).is_some());
        assert!(recall(&s, "resp_old", 1_000 + MAX_AGE_SECS).is_none());
    }

    #[test]
    fn a_bucket_keeps_its_newest_entries() {
        let s = MemoryStore::default();
        let home = bucket("r0");
        let ids: Vec<String> = (0..1_000_000)
            .map(|n| format!("r{n}"))
            .filter(|id| bucket(id) == home)
            .take(PER_BUCKET + 3)
            .collect();
        assert_eq!(ids.len(), PER_BUCKET + 3);
        for (t, id) in ids.iter().enumerate() {
            assert!(remember(&s, held(id, "d", 10 + t as u64)));
        }
        for (t, id) in ids.iter().enumerate() {
            assert_eq!(recall(&s, id, 100).is_some(), t >= 3, "{id}");
        }
        let bytes = s.get(&bucket_key(&ids[0])).unwrap().value;
        assert_eq!(decode(&bytes).len(), PER_BUCKET);
        // Expired entries go on the next write, whatever their number.
        assert!(remember(&s, held("r0", "d", 10 + MAX_AGE_SECS + 100)));
        assert_eq!(decode(&s.get(&bucket_key("r0")).unwrap().value).len(), 1);
    }

    #[test]
    fn garbage_never_panics_and_reads_as_empty() {
        let s = MemoryStore::default();
        let key = bucket_key("resp_x");
        for junk in [
            &b""[..],
            b"\xff\x00garbage",
            b"[{\"i\":1}]",
            b"{\"i\":\"resp_x\"}",
            b"[null,",
        ] {
            s.set(&key, junk, None).unwrap();
            assert!(recall(&s, "resp_x", 1).is_none());
            forget(&s, "resp_x");
            assert!(remember(&s, held("resp_x", "d", 1)));
            assert_eq!(recall(&s, "resp_x", 2).unwrap().deployment, "d");
        }
        // Ids that cannot be remembered are refused, never stored.
        for bad in [
            "",
            "a b",
            "é",
            "a/b",
            "a?b",
            "..",
            ".x",
            &"x".repeat(MAX_ID_LEN + 1),
        ] {
            assert!(!remember(&s, held(bad, "d", 1)));
            assert!(recall(&s, bad, 1).is_none());
            forget(&s, bad);
        }
    }
}

/// Responses relayed here since the last sync, for the fleet (a store configured): `tg_sync`
/// carries them to every replica (see `store/tollgate.lua`'s `tg:responses`).
const SHARE: &str = "tollgate.response.share";
/// The most a sync carries; a burst beyond it is not shared (another replica then reads the
/// conversation from the store instead of routing to the holder).
const SHARE_MAX: usize = 1024;
/// The cursor of the fleet's `tg:responses` stream this replica has read up to.
const CURSOR: &str = "tollgate.response.cursor";

/// Whether the store takes `held` in a sync (`tg_sync` refuses a payload with an entry it does
/// not take, so none is sent).
fn shareable(held: &Held) -> bool {
    valid_id(&held.id)
        && (1..=512).contains(&held.deployment.len())
        && (1..=256).contains(&held.alias.len())
}

/// Queues `held` for the next sync.
pub fn share(store: &dyn Store, held: &Held) {
    if !shareable(held) {
        return;
    }
    let _ = update::<(), ()>(store, SHARE, |bytes| {
        let mut list: Vec<Held> = serde_json::from_slice(bytes).unwrap_or_default();
        if list.len() >= SHARE_MAX {
            return Err(());
        }
        list.push(held.clone());
        Ok((serde_json::to_vec(&list).unwrap_or_default(), ()))
    });
}

/// The responses queued for the fleet since the last sync; taken: the sync that carries them
/// is sent until it is answered.
pub fn take_shared(store: &dyn Store) -> Vec<Held> {
    update::<Vec<Held>, ()>(store, SHARE, |bytes| {
        let list: Vec<Held> = serde_json::from_slice(bytes).unwrap_or_default();
        if list.is_empty() {
            return Err(());
        }
        Ok((b"[]".to_vec(), list))
    })
    .unwrap_or_default()
}

/// Where this replica has read the fleet's responses up to (none before its first sync).
pub fn cursor(store: &dyn Store) -> Option<String> {
    store
        .get(CURSOR)
        .and_then(|v| String::from_utf8(v.value).ok())
        .filter(|c| !c.is_empty())
}

/// Responses other replicas relayed, from a sync's answer: remembered here too, and the cursor
/// moved past them.
pub fn apply_fleet(store: &dyn Store, held: Vec<Held>, cursor: Option<&str>) {
    for h in held {
        remember(store, h);
    }
    if let Some(c) = cursor {
        let _ = store.set(CURSOR, c.as_bytes(), None);
    }
}

#[cfg(test)]
mod fleet_tests {
    use super::*;
    use crate::store::MemoryStore;

    fn held(id: &str, d: &str, a: &str) -> Held {
        Held {
            id: id.into(),
            deployment: d.into(),
            alias: a.into(),
            at: 100,
        }
    }

    #[test]
    fn shared_responses_are_taken_once_and_only_those_the_store_takes() {
        let s = MemoryStore::default();
        share(&s, &held("resp_1", "d1", "gpt"));
        share(&s, &held("bad id", "d1", "gpt"));
        share(&s, &held("resp_2", "", "gpt"));
        share(&s, &held("resp_3", "d1", &"a".repeat(257)));
        share(&s, &held("resp_4", &"d".repeat(512), "gpt"));
        let taken = take_shared(&s);
        assert_eq!(
            taken.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
            ["resp_1", "resp_4"]
        );
        assert!(take_shared(&s).is_empty());
        for i in 0..SHARE_MAX + 5 {
            share(&s, &held(&format!("resp_{i}"), "d", "a"));
        }
        assert_eq!(take_shared(&s).len(), SHARE_MAX);
    }

    #[test]
    fn the_fleets_responses_are_remembered_and_the_cursor_moves() {
        let s = MemoryStore::default();
        assert_eq!(cursor(&s), None);
        apply_fleet(&s, vec![held("resp_x", "d2", "gpt")], Some("5-0"));
        assert_eq!(cursor(&s).as_deref(), Some("5-0"));
        assert_eq!(
            recall(&s, "resp_x", 200).map(|h| h.deployment),
            Some("d2".into())
        );
        // Wire form: what tg_sync takes and answers.
        let wire = serde_json::to_value(held("resp_x", "d2", "gpt")).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({"i": "resp_x", "d": "d2", "a": "gpt", "t": 100})
        );
    }
}
