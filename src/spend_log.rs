//! Each request's spend record (a shared store configured): built when the request settles, kept
//! in a ring in the replica's shared data, and carried to Redis by the tick's `tg_sync`
//! (`spend_logs`, exactly once with the sync's sequence number), where `GET /spend/logs` reads
//! them (`tg_spend_logs`).
//!
//! The ring: `tollgate.spend.head` counts the records ever claimed (a writer claims an index with
//! one compare-and-swap, then writes its slot, `tollgate.spend.slot.<index % RING>`, tagged with
//! the index); `tollgate.spend.tail` is the next index the tick sends (the tick alone moves it).
//! The tick takes the written run from the tail, stopping at a slot not yet written. A replica
//! whose store is away for long enough to fill the ring loses its oldest unsent records (counted),
//! never memory: the ring holds at most [`RING`] records.

use serde::Serialize;

use crate::store::{update, Store};

/// Slots in the ring: records a replica holds while the store is away (~0.4 KB each).
pub const RING: u64 = 8192;
/// Records one sync carries at most (the library takes up to 4096).
pub const PER_SYNC: usize = 2048;

const HEAD: &str = "tollgate.spend.head";
const TAIL: &str = "tollgate.spend.tail";

fn slot_key(i: u64) -> String {
    format!("tollgate.spend.slot.{}", i % RING)
}

fn read_u64(store: &dyn Store, key: &str) -> u64 {
    store
        .get(key)
        .and_then(|v| std::str::from_utf8(&v.value).ok()?.parse().ok())
        .unwrap_or(0)
}

/// One request's record, in LiteLLM's spend-log names where it has them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Record<'a> {
    pub request_id: &'a str,
    /// The key's hash (`token`), `None` for the master key or an open gateway: what
    /// `GET /spend/logs?api_key=` filters on.
    pub api_key: Option<&'a str>,
    pub key_alias: Option<&'a str>,
    pub team_id: Option<&'a str>,
    /// The alias the client asked for.
    pub model_group: &'a str,
    /// The deployment that served it (`model_info.id`).
    pub model_id: Option<&'a str>,
    pub custom_llm_provider: Option<&'a str>,
    pub call_type: &'a str,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cached_tokens: u64,
    /// USD, and exactly, in micro-dollars.
    pub spend: f64,
    pub spend_micro: u64,
    /// `success` or `failure`, and the status the client saw (0: none, the client went away).
    pub status: &'static str,
    pub status_code: u16,
    #[serde(rename = "startTime")]
    pub start_time: String,
    #[serde(rename = "endTime")]
    pub end_time: String,
}

/// Puts a record in the ring. False when it could not be claimed (contention past the bound).
pub fn push(store: &dyn Store, record: &Record) -> bool {
    let Ok(json) = serde_json::to_vec(record) else {
        return false;
    };
    let claimed = update::<u64, ()>(store, HEAD, |bytes| {
        let n: u64 = std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((n.saturating_add(1).to_string().into_bytes(), n))
    });
    let Ok(index) = claimed else {
        return false;
    };
    let mut slot = Vec::with_capacity(json.len() + 8);
    slot.extend_from_slice(&index.to_le_bytes());
    slot.extend_from_slice(&json);
    store.set(&slot_key(index), &slot, None).is_ok()
}

/// What the tick takes for a sync: the records (JSON text, as [`push`] wrote it), and how many
/// were lost (overwritten unsent).
#[derive(Debug, Default)]
pub struct Taken {
    pub records: Vec<Vec<u8>>,
    pub lost: u64,
}

impl Taken {
    /// Appends `"spend_logs":[...]` to a JSON object's text (the sync's payload), the records
    /// spliced in as they are: no parse, no copy beyond this one.
    pub fn splice_into(&self, object: &mut String) {
        if self.records.is_empty() || !object.ends_with('}') {
            return;
        }
        object.pop();
        if !object.ends_with('{') {
            object.push(',');
        }
        object.push_str("\"spend_logs\":[");
        for (i, r) in self.records.iter().enumerate() {
            if i > 0 {
                object.push(',');
            }
            // Records are JSON this module wrote (UTF-8 by construction).
            object.push_str(std::str::from_utf8(r).unwrap_or("null"));
        }
        object.push_str("]}");
    }
}

/// Takes up to `max` records from the tail, in order; the tail moves past them (and past any
/// record overwritten before it was sent).
pub fn take(store: &dyn Store, max: usize) -> Taken {
    let head = read_u64(store, HEAD);
    let mut tail = read_u64(store, TAIL);
    let mut out = Taken::default();
    if head.saturating_sub(tail) > RING {
        out.lost = head - RING - tail;
        tail = head - RING;
    }
    while tail < head && out.records.len() < max {
        let Some(v) = store.get(&slot_key(tail)) else {
            break;
        };
        let (tag, json) = v.value.split_at(8.min(v.value.len()));
        let written = <[u8; 8]>::try_from(tag).map(u64::from_le_bytes).ok();
        match written {
            Some(i) if i == tail => {
                if !json.is_empty() {
                    out.records.push(json.to_vec());
                }
            }
            // Overwritten by a record of the next lap: this one is lost.
            Some(i) if i > tail => out.lost += 1,
            // Claimed but not written yet (a writer between its two steps): next time.
            _ => break,
        }
        tail += 1;
    }
    if out.records.is_empty() && out.lost == 0 {
        return out;
    }
    let _ = store.set(TAIL, tail.to_string().as_bytes(), None);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn rec(id: &str) -> Record<'_> {
        Record {
            request_id: id,
            model_group: "gpt",
            call_type: "chat",
            status: "success",
            ..Default::default()
        }
    }

    #[test]
    fn records_go_once_and_in_order() {
        let s = MemoryStore::default();
        assert!(take(&s, 10).records.is_empty());
        for i in 0..5 {
            assert!(push(&s, &rec(&i.to_string())));
        }
        let t = take(&s, 3);
        let ids: Vec<String> = t
            .records
            .iter()
            .map(|r| {
                serde_json::from_slice::<serde_json::Value>(r).unwrap()["request_id"].to_string()
            })
            .collect();
        assert_eq!(ids, ["\"0\"", "\"1\"", "\"2\""]);
        assert_eq!(take(&s, 10).records.len(), 2);
        assert!(take(&s, 10).records.is_empty());
    }

    #[test]
    fn a_claimed_slot_not_yet_written_waits() {
        let s = MemoryStore::default();
        push(&s, &rec("a"));
        // A writer claimed index 1 and has not written it yet.
        s.set(HEAD, b"2", None).unwrap();
        assert_eq!(take(&s, 10).records.len(), 1);
        assert!(take(&s, 10).records.is_empty());
        let mut slot = 1u64.to_le_bytes().to_vec();
        slot.extend_from_slice(br#"{"request_id":"b"}"#);
        s.set(&slot_key(1), &slot, None).unwrap();
        assert_eq!(take(&s, 10).records.len(), 1);
    }

    #[test]
    fn a_full_ring_loses_the_oldest_and_holds_its_size() {
        let s = MemoryStore::default();
        for i in 0..(RING + 10) {
            push(&s, &rec(&i.to_string()));
        }
        let t = take(&s, usize::MAX);
        assert_eq!(t.lost, 10);
        assert_eq!(t.records.len() as u64, RING);
        let first: serde_json::Value = serde_json::from_slice(&t.records[0]).unwrap();
        assert_eq!(first["request_id"], "10");
        let slots = s
            .keys()
            .iter()
            .filter(|k| k.starts_with("tollgate.spend.slot."))
            .count();
        assert_eq!(slots as u64, RING);
    }
}
