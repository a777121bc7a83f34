//! Keys across replicas (`tollgate_settings.store` configured). Redis holds every key definition
//! the admin API wrote (`tg:k:<token>`, written through `tg_key_put` before the admin call
//! answers) and a change log (`tg:changes`); each replica keeps what it has read in its own
//! shared data, so that a key's requests after its first on a replica read nothing remote.
//!
//! A replica trusts its copy of a key only once it has *seen* it: read it from Redis (or found
//! that Redis has no override of a config key) since the last change to it. The tick's `tg_sync`
//! brings the change log's new entries; each marks its key unseen, so the key's next request on
//! this replica reads it again (block, delete and update reach every replica within a tick and
//! one read). An unknown key is read in its request's body phase; one Redis has no record of is
//! remembered as absent by each worker for [`ABSENT_TTL_MS`] (until any key changes), so a
//! client repeating a bad key does not cost a Redis call per request.
//!
//! Records, in the replica's shared data:
//! - `tollgate.keys.cursor`: the change log's cursor (absent until the first sync answered: until
//!   then nothing is marked seen, since a change between a read and the first sync would be missed);
//! - `tollgate.keys.epoch`: bumped when changes were lost (the log was trimmed past the cursor):
//!   every key is unseen again;
//! - `tollgate.keys.changed`: bumped by every batch of changes applied. A read that started
//!   before a batch and answers after it installs what it read but does not mark it seen;
//! - `tollgate.keys.seen.<token>`: the epoch the key was seen in (empty: a change since).

use std::cell::RefCell;

use hashbrown::HashMap;
use serde::Deserialize;

use super::{def_store_key, team_store_key, KeyDef, TeamDef, TEAM_TOKEN_PREFIX};
use crate::store::Store;

const CURSOR: &str = "tollgate.keys.cursor";
const EPOCH: &str = "tollgate.keys.epoch";
const CHANGED: &str = "tollgate.keys.changed";
const SEEN_PREFIX: &str = "tollgate.keys.seen.";

/// How long a worker remembers that the store has no such key (unless a key changes first).
pub const ABSENT_TTL_MS: u64 = 10_000;
/// The most absent keys a worker remembers; past it the memory starts over.
const ABSENT_MAX: usize = 4096;

fn seen_key(token: &str) -> String {
    [SEEN_PREFIX, token].concat()
}

fn read_u64(store: &dyn Store, key: &str) -> u64 {
    store
        .get(key)
        .and_then(|v| std::str::from_utf8(&v.value).ok()?.parse().ok())
        .unwrap_or(0)
}

fn bump(store: &dyn Store, key: &str) {
    let _ = crate::store::update::<_, ()>(store, key, |bytes| {
        let n: u64 = std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((n.saturating_add(1).to_string().into_bytes(), ()))
    });
}

/// The change log's cursor, for the next `tg_sync` (`None` before the first answer).
pub fn cursor(store: &dyn Store) -> Option<String> {
    store
        .get(CURSOR)
        .and_then(|v| String::from_utf8(v.value).ok())
        .filter(|c| !c.is_empty())
}

/// Whether this replica's copy of the key is current: read since its last change.
pub fn seen(store: &dyn Store, token: &str) -> bool {
    if cursor(store).is_none() {
        return false;
    }
    let Some(v) = store.get(&seen_key(token)) else {
        return false;
    };
    !v.value.is_empty() && v.value == read_u64(store, EPOCH).to_string().into_bytes()
}

/// What [`seen`] compares a key's mark with, read once for the keys one request checks (its key
/// and its team), as if the checks ran at the moment the first was read: the count of change
/// batches applied, then (only for a key this worker has not found seen at that count) whether
/// the change log has a cursor, and the epoch.
#[derive(Debug, Clone)]
pub struct Marks {
    /// The store's identity and its count of change batches applied.
    changed: (u64, u64),
    /// `None` until needed; then `Some(None)` before the first sync answered.
    epoch: Option<Option<Vec<u8>>>,
}

impl Marks {
    pub fn read(store: &dyn Store) -> Marks {
        Marks {
            changed: (store.identity(), changed_count(store)),
            epoch: None,
        }
    }

    fn epoch(&mut self, store: &dyn Store) -> Option<&[u8]> {
        self.epoch
            .get_or_insert_with(|| {
                cursor(store).map(|_| read_u64(store, EPOCH).to_string().into_bytes())
            })
            .as_deref()
    }
}

/// [`CHANGED`]: the count of change batches applied (0 before the first).
fn changed_count(store: &dyn Store) -> u64 {
    read_u64(store, CHANGED)
}

thread_local! {
    /// Keys (and teams) this worker found seen, in a store at a count of change batches applied
    /// (a worker's memory of one store, a test's, never matches another's). A key
    /// becomes unseen only by a batch of changes, which clears its mark and then bumps the
    /// count: while the count is the same, a key found seen is still seen, and its request
    /// reads one record (the count) instead of the cursor, the epoch and its mark.
    static SEEN: RefCell<((u64, u64), hashbrown::HashSet<String>)> =
        RefCell::new(((0, 0), hashbrown::HashSet::new()));
}

/// The most keys a worker remembers as seen; past it the memory starts over.
const SEEN_MAX: usize = 4096;

/// [`needs_read`] against marks already read.
pub fn needs_read_with(store: &dyn Store, marks: &mut Marks, token: &str, now_ms: u64) -> bool {
    let remembered = SEEN.with(|s| {
        let s = s.borrow();
        s.0 == marks.changed && s.1.contains(token)
    });
    if remembered {
        return false;
    }
    let seen = marks.epoch(store).is_some_and(|epoch| {
        store
            .get(&seen_key(token))
            .is_some_and(|v| !v.value.is_empty() && v.value == epoch)
    });
    if seen {
        SEEN.with(|s| {
            let mut s = s.borrow_mut();
            if s.0 != marks.changed || s.1.len() >= SEEN_MAX {
                *s = (marks.changed, hashbrown::HashSet::new());
            }
            s.1.insert(token.to_string());
        });
    }
    !seen && !known_absent(store, token, now_ms)
}

thread_local! {
    /// This worker's keys the store said it does not have: token -> (changes applied then, until).
    static ABSENT: RefCell<HashMap<String, (u64, u64)>> = RefCell::new(HashMap::new());
}

fn known_absent(store: &dyn Store, token: &str, now_ms: u64) -> bool {
    let changed = changed_count(store);
    ABSENT.with(|a| {
        a.borrow()
            .get(token)
            .is_some_and(|&(c, until)| c == changed && now_ms < until)
    })
}

fn remember_absent(token: &str, changed: u64, now_ms: u64) {
    ABSENT.with(|a| {
        let mut a = a.borrow_mut();
        if a.len() >= ABSENT_MAX {
            a.clear();
        }
        a.insert(
            token.to_string(),
            (changed, now_ms.saturating_add(ABSENT_TTL_MS)),
        );
    });
}

/// Whether a request with this key must read it from the store first.
pub fn needs_read(store: &dyn Store, token: &str, now_ms: u64) -> bool {
    !seen(store, token) && !known_absent(store, token, now_ms)
}

/// What to remember when a read starts: how many batches of changes were applied by then.
pub fn read_started(store: &dyn Store) -> u64 {
    changed_count(store)
}

/// Why an answer could not be installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadAnswer(pub String);

/// Installs what the store answered for `token` (the function's JSON text). A record overrides
/// the config's key (a tombstone deletes it); no record leaves the config's key as it is, or
/// none. Marked seen unless changes were applied since the read started (`started`).
pub fn install(
    store: &dyn Store,
    config_keys: &hashbrown::HashMap<String, KeyDef>,
    token: &str,
    answer: &str,
    started: u64,
    now_ms: u64,
) -> Result<(), BadAnswer> {
    let check = |text: &str| {
        let def: KeyDef = serde_json::from_str(text)
            .map_err(|e| BadAnswer(format!("the store's record of a key is not a key: {e}")))?;
        if def.token != token {
            return Err(BadAnswer("the store's record is of another key".into()));
        }
        // Its counters exist before its first request here (see `quota::ensure_record`).
        crate::quota::ensure_record(store, &def.usage_record(), now_ms / 1000);
        Ok(())
    };
    let in_config = config_keys.contains_key(token);
    install_record(
        store,
        token,
        &def_store_key(token),
        in_config,
        answer,
        started,
        now_ms,
        check,
    )
}

/// [`install`] for a team, whose token is `team:<id>` (`tg_key_get` holds teams too).
pub fn install_team(
    store: &dyn Store,
    config_teams: &hashbrown::HashMap<String, TeamDef>,
    token: &str,
    answer: &str,
    started: u64,
    now_ms: u64,
) -> Result<(), BadAnswer> {
    let id = token.strip_prefix(TEAM_TOKEN_PREFIX).unwrap_or(token);
    let check = |text: &str| {
        let def: TeamDef = serde_json::from_str(text)
            .map_err(|e| BadAnswer(format!("the store's record of a team is not a team: {e}")))?;
        if def.team_id != id {
            return Err(BadAnswer("the store's record is of another team".into()));
        }
        crate::quota::ensure_record(store, &def.usage_record(), now_ms / 1000);
        Ok(())
    };
    let in_config = config_teams.contains_key(id);
    install_record(
        store,
        token,
        &team_store_key(id),
        in_config,
        answer,
        started,
        now_ms,
        check,
    )
}

#[allow(clippy::too_many_arguments)]
fn install_record(
    store: &dyn Store,
    token: &str,
    local_key: &str,
    in_config: bool,
    answer: &str,
    started: u64,
    now_ms: u64,
    check: impl Fn(&str) -> Result<(), BadAnswer>,
) -> Result<(), BadAnswer> {
    // `{"key": <record> | null}`; anything else (an `{"error"}`) is not an answer.
    let bad = || BadAnswer(format!("tg_key_get answered {}", clip(answer)));
    let got: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(answer).map_err(|_| bad())?;
    let raw = got.get("key").ok_or_else(bad)?;
    let known = match Some(raw).filter(|r| r.get() != "null") {
        Some(raw) => {
            let text = raw.get();
            check(text)?;
            let _ = store.set(local_key, text.as_bytes(), None);
            true
        }
        None => {
            if store.get(local_key).is_some_and(|v| !v.value.is_empty()) {
                let _ = store.set(local_key, b"", None);
            }
            if !in_config {
                // Remembered by this worker only: shared data would grow with every bad key.
                remember_absent(token, started, now_ms);
            }
            in_config
        }
    };
    if known && cursor(store).is_some() && changed_count(store) == started {
        let epoch = read_u64(store, EPOCH).to_string();
        let _ = store.set(&seen_key(token), epoch.as_bytes(), None);
    }
    Ok(())
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

/// One entry of the change log, as `tg_sync` returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Change {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub op: String,
}

/// Applies a sync's share of the change log: each changed key is unseen; lost changes unsee
/// every key; the cursor moves on.
pub fn apply_changes(store: &dyn Store, changes: &[Change], cursor: Option<&str>, lost: bool) {
    for c in changes {
        let key = seen_key(&c.token);
        if store.get(&key).is_some_and(|v| !v.value.is_empty()) {
            let _ = store.set(&key, b"", None);
        }
    }
    if lost {
        bump(store, EPOCH);
    }
    if lost || !changes.is_empty() {
        bump(store, CHANGED);
    }
    if let Some(c) = cursor.filter(|c| !c.is_empty()) {
        if self::cursor(store).as_deref() != Some(c) {
            let _ = store.set(CURSOR, c.as_bytes(), None);
        }
    }
}

/// What an admin call writes to the store: the keys and teams whose definitions it changed (by
/// token: a key's hash, `team:<id>`), read from the writes of a dry run (see [`Overlay`]).
pub fn written_keys(overlay: &Overlay) -> Vec<(String, Vec<u8>)> {
    let prefix = def_store_key("");
    let team_prefix = team_store_key("");
    let mut out: Vec<(String, Vec<u8>)> = overlay
        .writes
        .borrow()
        .iter()
        .filter_map(|(k, (v, _))| {
            let token = match k.strip_prefix(&team_prefix) {
                Some(id) if super::is_team_id(id) => super::team_token(id),
                _ => k
                    .strip_prefix(&prefix)
                    .filter(|t| super::is_hash(t))?
                    .to_string(),
            };
            Some((token, v.clone()))
        })
        .collect();
    out.sort();
    out
}

/// A store that reads through to another and keeps its own writes: an admin call runs on it
/// first, to find what it would write (and refuse what it would refuse) before anything changes.
pub struct Overlay<'a> {
    base: &'a dyn Store,
    writes: RefCell<HashMap<String, (Vec<u8>, u32)>>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn Store) -> Self {
        Overlay {
            base,
            writes: RefCell::new(HashMap::new()),
        }
    }
}

impl Store for Overlay<'_> {
    fn get(&self, key: &str) -> Option<crate::store::Versioned> {
        if let Some((v, cas)) = self.writes.borrow().get(key) {
            return Some(crate::store::Versioned {
                value: v.clone(),
                cas: *cas,
            });
        }
        self.base.get(key)
    }

    fn set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), crate::store::StoreError> {
        let current = self.get(key).map(|v| v.cas);
        if let (Some(cur), Some(c)) = (current, cas) {
            if cur != c {
                return Err(crate::store::StoreError::Conflict);
            }
        }
        let next = current.map_or(1, |c| c.wrapping_add(1).max(1));
        self.writes
            .borrow_mut()
            .insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
    fn identity(&self) -> u64 {
        self.base.identity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn record(token: &str, blocked: bool) -> String {
        serde_json::to_string(&KeyDef {
            token: token.into(),
            key_name: "sk-...abcd".into(),
            blocked,
            ..Default::default()
        })
        .unwrap()
    }

    const T: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    /// [`needs_read`], checked against [`needs_read_with`] (the marks read once for a request),
    /// twice: the second time a seen key is remembered by the worker.
    fn read_needed(s: &MemoryStore, token: &str) -> bool {
        let alone = needs_read(s, token, 0);
        assert_eq!(needs_read_with(s, &mut Marks::read(s), token, 0), alone);
        assert_eq!(needs_read_with(s, &mut Marks::read(s), token, 0), alone);
        alone
    }

    #[test]
    fn a_key_is_read_until_seen_and_again_after_a_change() {
        let s = MemoryStore::default();
        let none = hashbrown::HashMap::new();
        assert!(read_needed(&s, T));
        // Before the first sync answered, what is read is installed but not trusted.
        let started = read_started(&s);
        let answer = format!(r#"{{"key":{}}}"#, record(T, false));
        install(&s, &none, T, &answer, started, 0).unwrap();
        assert!(super::super::find(&none, &s, T).is_some());
        assert!(read_needed(&s, T));
        apply_changes(&s, &[], Some("5-0"), false);
        install(&s, &none, T, &answer, read_started(&s), 0).unwrap();
        assert!(!read_needed(&s, T));
        // A change to it: read again; a read that crossed the change is not trusted.
        let started = read_started(&s);
        apply_changes(
            &s,
            &[Change {
                id: "6-0".into(),
                token: T.into(),
                op: "block".into(),
            }],
            Some("6-0"),
            false,
        );
        assert!(read_needed(&s, T));
        install(&s, &none, T, &answer, started, 0).unwrap();
        assert!(read_needed(&s, T));
        let blocked = format!(r#"{{"key":{}}}"#, record(T, true));
        install(&s, &none, T, &blocked, read_started(&s), 0).unwrap();
        assert!(!read_needed(&s, T));
        assert!(super::super::find(&none, &s, T).unwrap().blocked);
        // Lost changes: every key is read again.
        apply_changes(&s, &[], Some("9-0"), true);
        assert!(read_needed(&s, T));
        assert_eq!(cursor(&s).as_deref(), Some("9-0"));
    }

    #[test]
    fn no_record_means_the_config_key_or_an_absent_one_remembered_briefly() {
        let s = MemoryStore::default();
        apply_changes(&s, &[], Some("1-0"), false);
        let mut config = hashbrown::HashMap::new();
        let c = "c".repeat(64);
        config.insert(
            c.clone(),
            KeyDef {
                token: c.clone(),
                from_config: true,
                ..Default::default()
            },
        );
        // A stale local override of a config key goes when the store has none.
        s.set(&def_store_key(&c), record(&c, true).as_bytes(), None)
            .unwrap();
        install(&s, &config, &c, r#"{"key":null}"#, read_started(&s), 0).unwrap();
        assert!(!super::super::find(&config, &s, &c).unwrap().blocked);
        assert!(!needs_read(&s, &c, 0));

        let b = "b".repeat(64);
        install(&s, &config, &b, r#"{"key":null}"#, read_started(&s), 100).unwrap();
        assert!(!needs_read(&s, &b, 100));
        assert!(needs_read(&s, &b, 100 + ABSENT_TTL_MS));
        apply_changes(
            &s,
            &[Change {
                token: b.clone(),
                ..Default::default()
            }],
            Some("2-0"),
            false,
        );
        assert!(needs_read(&s, &b, 101), "a change forgets absent keys");
    }

    #[test]
    fn garbage_answers_install_nothing() {
        let s = MemoryStore::default();
        let none = hashbrown::HashMap::new();
        for bad in [
            "",
            "[]",
            "{\"key\":5}",
            "{\"key\":{\"token\":1}}",
            "not json",
            r#"{"error":"token must be a key hash"}"#,
            &format!(r#"{{"key":{}}}"#, record(&"d".repeat(64), false)),
        ] {
            assert!(install(&s, &none, T, bad, 0, 0).is_err(), "{bad}");
        }
        assert!(s.get(&def_store_key(T)).is_none());
    }

    #[test]
    fn the_overlay_keeps_its_writes_and_names_the_keys_written() {
        let base = MemoryStore::default();
        base.set("x", b"1", None).unwrap();
        let o = Overlay::new(&base);
        let v = o.get("x").unwrap();
        o.set("x", b"2", Some(v.cas)).unwrap();
        assert!(o.set("x", b"3", Some(v.cas)).is_err());
        o.set(&def_store_key(T), b"{}", None).unwrap();
        o.set(super::super::INDEX_KEY, b"[]", None).unwrap();
        assert_eq!(base.get("x").unwrap().value, b"1");
        assert_eq!(o.get("x").unwrap().value, b"2");
        assert_eq!(written_keys(&o), vec![(T.to_string(), b"{}".to_vec())]);
    }

    /// A team's record installs like a key's (token `team:<id>`), with its usage counters; no
    /// record leaves a config team, or remembers an unknown one as absent.
    #[test]
    fn teams_install_like_keys() {
        let s = MemoryStore::default();
        apply_changes(&s, &[], Some("1-0"), false);
        let team = TeamDef {
            team_id: "ml".into(),
            blocked: true,
            generation: Some("g".into()),
            ..Default::default()
        };
        let answer = format!(r#"{{"key":{}}}"#, serde_json::to_string(&team).unwrap());
        let none = hashbrown::HashMap::new();
        install_team(&s, &none, "team:ml", &answer, read_started(&s), 0).unwrap();
        assert!(!needs_read(&s, "team:ml", 0));
        assert!(super::super::find_team(&none, &s, "ml").unwrap().blocked);
        assert!(s.get(&team.usage_record()).is_some());
        assert!(install_team(&s, &none, "team:other", &answer, 0, 0).is_err());
        install_team(
            &s,
            &none,
            "team:gone",
            r#"{"key":null}"#,
            read_started(&s),
            5,
        )
        .unwrap();
        assert!(!needs_read(&s, "team:gone", 5), "remembered as absent");
        assert!(super::super::find_team(&none, &s, "gone").is_none());
    }
}
