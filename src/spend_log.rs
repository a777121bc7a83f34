//! Each request's spend record (a shared store configured): built when the request settles, kept
//! in a ring in the replica's shared data, and carried to Redis by the tick's `tg_sync`
//! (`spend_logs`, exactly once with the sync's sequence number), where `GET /spend/logs` reads
//! them (`tg_spend_logs`).
//!
//! The ring: `tollgate.spend.head` holds the next slot index and how many records the ring
//! holds; a writer claims a slot with one compare-and-swap, then writes it
//! (`tollgate.spend.slot.<index % RING>`, tagged with the index and its record count). A slot
//! holds one record or a batch: the `.wasm` gathers each worker's records in the worker's memory
//! and writes them as one slot from the worker's own tick, so neither a request nor the sending
//! tick pays a shared-data call per record (the dynamic module writes each record, in a process
//! where those calls cost little). `tollgate.spend.tail` is the next index the tick sends (the
//! tick alone moves it); it takes the written run from the tail, stopping at a slot not yet
//! written. The ring holds at most [`MAX_RECORDS`] records: past it, new records are dropped and
//! counted (a store away for long), never memory.

use serde::Serialize;

use crate::store::{update, Store};

/// Records the ring holds at most while the store is away (~0.4 KB each); as many slots.
pub const MAX_RECORDS: u64 = 8192;
const RING: u64 = MAX_RECORDS;
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

/// A record as the store takes it: one line, `<key hash or -> <JSON>` (a compact JSON text
/// holds no raw newline), so that `tg_sync` files it under its key without parsing it.
fn write_line(out: &mut Vec<u8>, record: &Record) -> bool {
    out.extend_from_slice(record.api_key.unwrap_or("-").as_bytes());
    out.push(b' ');
    // The crate's writer: serde_json's bytes in about half the instructions (every request
    // writes one). A record's serialization cannot fail (no map keys, no custom impls).
    crate::json::write(out, record);
    true
}

/// Puts a record in the ring. False when it could not (the ring is full, or contention).
pub fn push(store: &dyn Store, record: &Record) -> bool {
    let mut line = Vec::with_capacity(512);
    write_line(&mut line, record) && push_batch(store, &line, 1)
}

/// The head record: `[next slot index, records the ring holds]`.
fn read_head(bytes: &[u8]) -> (u64, u64) {
    let text = std::str::from_utf8(bytes).unwrap_or("");
    let mut parts = text.split(' ').map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Writes `n` records (lines joined by newlines) as one slot.
fn push_batch(store: &dyn Store, json: &[u8], n: u32) -> bool {
    let claimed = update::<u64, ()>(store, HEAD, |bytes| {
        let (next, held) = read_head(bytes);
        if held.saturating_add(u64::from(n)) > MAX_RECORDS {
            return Err(());
        }
        let head = format!("{} {}", next.saturating_add(1), held + u64::from(n));
        Ok((head.into_bytes(), next))
    });
    let Ok(index) = claimed else {
        return false;
    };
    let mut slot = Vec::with_capacity(json.len() + 12);
    slot.extend_from_slice(&index.to_le_bytes());
    slot.extend_from_slice(&n.to_le_bytes());
    slot.extend_from_slice(json);
    store.set(&slot_key(index), &slot, None).is_ok()
}

thread_local! {
    /// This worker's records not yet in the ring (the `.wasm`): their lines and their count.
    static LOCAL: std::cell::RefCell<(Vec<u8>, u32)> = const { std::cell::RefCell::new((Vec::new(), 0)) };
}

/// Records a worker gathers before it writes them itself (else at its next tick).
pub const LOCAL_BATCH: u32 = 256;

/// Keeps a record in this worker's batch; true when the batch is full and should be written now
/// ([`flush_local`]).
pub fn buffer(record: &Record) -> bool {
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let (lines, n) = &mut *l;
        let before = lines.len();
        if *n > 0 {
            lines.push(b'\n');
        }
        if !write_line(lines, record) {
            lines.truncate(before);
            return false;
        }
        *n += 1;
        *n >= LOCAL_BATCH
    })
}

/// Writes this worker's batch to the ring as one slot. Returns the records dropped (the ring was
/// full).
pub fn flush_local(store: &dyn Store) -> u32 {
    let (json, n) = LOCAL.with(|l| std::mem::take(&mut *l.borrow_mut()));
    if n == 0 || push_batch(store, &json, n) {
        0
    } else {
        n
    }
}

/// What the tick takes for a sync: the slots' records (lines joined by newlines, as written) and
/// how many records they hold.
#[derive(Debug, Default)]
pub struct Taken {
    pub records: Vec<Vec<u8>>,
    pub count: usize,
}

impl Taken {
    /// Appends the records to the sync's payload after its line, in blocks of one key's records
    /// (`tg_sync` stores a block as one entry without parsing it): `<key> <n> <bytes>\n`, then
    /// the n JSON texts joined by newlines, then a newline. No record is parsed.
    pub fn append_to(&self, payload: &mut String) {
        // Each key's records, in the order keys first appear.
        let mut blocks: Vec<(&str, Vec<&str>)> = Vec::new();
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for slot in &self.records {
            // Lines this module wrote: UTF-8 by construction (a slot that is not is left out).
            let Ok(text) = std::str::from_utf8(slot) else {
                continue;
            };
            for line in text.split('\n') {
                let Some((key, json)) = line.split_once(' ') else {
                    continue;
                };
                if key.is_empty() || json.is_empty() {
                    continue;
                }
                let at = *index.entry(key).or_insert_with(|| {
                    blocks.push((key, Vec::new()));
                    blocks.len() - 1
                });
                if let Some(b) = blocks.get_mut(at) {
                    b.1.push(json);
                }
            }
        }
        for (key, jsons) in &blocks {
            let bytes =
                jsons.iter().map(|j| j.len()).sum::<usize>() + jsons.len().saturating_sub(1);
            payload.reserve(bytes + key.len() + 24);
            payload.push('\n');
            payload.push_str(key);
            payload.push(' ');
            payload.push_str(&jsons.len().to_string());
            payload.push(' ');
            payload.push_str(&bytes.to_string());
            payload.push('\n');
            for (i, j) in jsons.iter().enumerate() {
                if i > 0 {
                    payload.push('\n');
                }
                payload.push_str(j);
            }
        }
        if !blocks.is_empty() {
            payload.push('\n');
        }
    }
}

/// Takes whole slots from the tail, in order, up to `max` records (at least one slot); the tail
/// moves past them and the ring's count goes down by what they held.
pub fn take(store: &dyn Store, max: usize) -> Taken {
    let (head, _) = store
        .get(HEAD)
        .map(|v| read_head(&v.value))
        .unwrap_or_default();
    let mut tail = read_u64(store, TAIL);
    let mut out = Taken::default();
    while tail < head {
        let Some(v) = store.get(&slot_key(tail)) else {
            break;
        };
        let written = v
            .value
            .get(..8)
            .and_then(|t| <[u8; 8]>::try_from(t).ok())
            .map(u64::from_le_bytes);
        let n = v
            .value
            .get(8..12)
            .and_then(|t| <[u8; 4]>::try_from(t).ok())
            .map_or(0, u32::from_le_bytes) as usize;
        // Claimed but not written yet (a writer between its two steps): next time.
        if written != Some(tail) {
            break;
        }
        if !out.records.is_empty() && out.count + n > max {
            break;
        }
        if let Some(json) = v.value.get(12..).filter(|j| !j.is_empty()) {
            out.records.push(json.to_vec());
            out.count += n;
        }
        tail += 1;
    }
    if out.records.is_empty() {
        return out;
    }
    let _ = store.set(TAIL, tail.to_string().as_bytes(), None);
    let taken = out.count as u64;
    let _ = update::<(), ()>(store, HEAD, |bytes| {
        let (next, held) = read_head(bytes);
        Ok((
            format!("{next} {}", held.saturating_sub(taken)).into_bytes(),
            (),
        ))
    });
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

    /// The records as `tg_sync` reads them: (key, request id) in the order sent.
    fn sent(t: &Taken) -> Vec<(String, String)> {
        let mut all = String::from("{}");
        t.append_to(&mut all);
        let (head, mut rest) = all.split_once('\n').unwrap_or((&all, ""));
        assert_eq!(head, "{}");
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (header, after) = rest.split_once('\n').unwrap();
            let mut h = header.split(' ');
            let (key, n, bytes) = (h.next().unwrap(), h.next().unwrap(), h.next().unwrap());
            let bytes: usize = bytes.parse().unwrap();
            let body = &after[..bytes];
            assert_eq!(
                &after[bytes..bytes + 1],
                "\n",
                "a block ends with a newline"
            );
            let records: Vec<&str> = body.split('\n').collect();
            assert_eq!(records.len(), n.parse::<usize>().unwrap());
            for r in records {
                let v: serde_json::Value = serde_json::from_str(r).unwrap();
                assert_eq!(v["api_key"].as_str().unwrap_or("-"), key);
                out.push((
                    key.to_string(),
                    v["request_id"].as_str().unwrap().to_string(),
                ));
            }
            rest = &after[bytes + 1..];
        }
        out
    }

    fn ids(t: &Taken) -> Vec<String> {
        sent(t).into_iter().map(|(_, id)| id).collect()
    }

    #[test]
    fn a_record_line_is_its_key_then_serde_jsons_text() {
        let mut record = Record {
            request_id: "req-\"1\"\n\u{1}",
            api_key: None,
            key_alias: Some("alias é ✓"),
            model_group: "gpt",
            call_type: "acompletion",
            prompt_tokens: 171,
            spend: 0.000_123_4,
            spend_micro: 123,
            status: "success",
            status_code: 200,
            start_time: "2026-12-06T07:33:36.123Z".into(),
            end_time: "2026-12-06T07:33:36.456Z".into(),
            ..Default::default()
        };
        for spend in [0.0, 1e-7, 0.1 + 0.2, 12_345.678_9, f64::NAN, 1e21] {
            record.spend = spend;
            let mut line = Vec::new();
            assert!(write_line(&mut line, &record));
            let expected = format!("- {}", serde_json::to_string(&record).unwrap());
            assert_eq!(String::from_utf8(line).unwrap(), expected);
        }
        record.api_key = Some("abc");
        let mut line = Vec::new();
        assert!(write_line(&mut line, &record));
        assert!(line.starts_with(b"abc {"));
    }

    #[test]
    fn records_go_in_blocks_by_key_in_the_order_keys_appear() {
        let s = MemoryStore::default();
        let keyed = |id, key| Record {
            api_key: key,
            ..rec(id)
        };
        for (id, key) in [
            ("1", Some("k1")),
            ("2", None),
            ("3", Some("k1")),
            ("4", Some("k2")),
        ] {
            assert!(push(&s, &keyed(id, key)));
        }
        let got = sent(&take(&s, 10));
        let pairs: Vec<(&str, &str)> = got.iter().map(|(k, i)| (k.as_str(), i.as_str())).collect();
        assert_eq!(pairs, [("k1", "1"), ("k1", "3"), ("-", "2"), ("k2", "4")]);
        let mut none = String::from("{}");
        take(&s, 10).append_to(&mut none);
        assert_eq!(none, "{}", "no records, no blocks");
    }

    #[test]
    fn records_go_once_and_in_order() {
        let s = MemoryStore::default();
        assert!(take(&s, 10).records.is_empty());
        for i in 0..5 {
            assert!(push(&s, &rec(&i.to_string())));
        }
        assert_eq!(ids(&take(&s, 3)), ["0", "1", "2"]);
        assert_eq!(ids(&take(&s, 10)), ["3", "4"]);
        assert!(take(&s, 10).records.is_empty());
    }

    #[test]
    fn a_workers_batch_is_one_slot_and_counts_as_its_records() {
        let s = MemoryStore::default();
        assert!(!buffer(&rec("a")));
        assert!(!buffer(&rec("b")));
        assert_eq!(flush_local(&s), 0);
        assert_eq!(flush_local(&s), 0, "nothing left to write");
        push(&s, &rec("c"));
        let t = take(&s, 10);
        assert_eq!((t.records.len(), t.count), (2, 3));
        assert_eq!(ids(&t), ["a", "b", "c"]);
        for i in 0..LOCAL_BATCH - 1 {
            assert!(!buffer(&rec(&i.to_string())));
        }
        assert!(buffer(&rec("last")), "a full batch asks to be written");
        assert_eq!(flush_local(&s), 0);
        assert_eq!(
            take(&s, 10).count,
            LOCAL_BATCH as usize,
            "a slot is taken whole"
        );
    }

    #[test]
    fn a_claimed_slot_not_yet_written_waits() {
        let s = MemoryStore::default();
        push(&s, &rec("a"));
        // A writer claimed index 1 and has not written it yet.
        s.set(HEAD, b"2 2", None).unwrap();
        assert_eq!(take(&s, 10).count, 1);
        assert!(take(&s, 10).records.is_empty());
        let mut slot = 1u64.to_le_bytes().to_vec();
        slot.extend_from_slice(&1u32.to_le_bytes());
        slot.extend_from_slice(br#"- {"request_id":"b"}"#);
        s.set(&slot_key(1), &slot, None).unwrap();
        assert_eq!(ids(&take(&s, 10)), ["b"]);
    }

    #[test]
    fn a_full_ring_drops_new_records_and_holds_its_size() {
        let s = MemoryStore::default();
        let kept = (0..MAX_RECORDS + 10)
            .filter(|i| push(&s, &rec(&i.to_string())))
            .count() as u64;
        assert_eq!(kept, MAX_RECORDS);
        let slots = s
            .keys()
            .iter()
            .filter(|k| k.starts_with("tollgate.spend.slot."))
            .count();
        assert_eq!(slots as u64, MAX_RECORDS);
        assert_eq!(take(&s, usize::MAX).count as u64, MAX_RECORDS);
        assert!(push(&s, &rec("room again")));
    }
}
