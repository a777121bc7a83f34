use super::*;
use crate::quota::fleet::{Amounts, Shortfall};
use crate::quota::{Estimate, Scope};
use crate::store::MemoryStore;

const NOW: u64 = 1_790_000_000_000;
const AGE: u64 = u64::MAX;

fn limits() -> Limits {
    Limits {
        max_budget: Some(10_000),
        ..Default::default()
    }
}

fn key_party<'a>(record: &'a str, limits: &'a Limits) -> Party<'a> {
    Party {
        scope: Scope::Key,
        key: record,
        limits,
    }
}

/// A request's estimate: ten micro-dollars, one token.
fn ten() -> Estimate {
    Estimate {
        cost: 10,
        tokens: 1,
    }
}

fn admit_locally(
    store: &MemoryStore,
    party: &str,
    l: &Limits,
    est: Estimate,
) -> Result<(), Shortfall> {
    track(store, party, l, false);
    update(store, &ledger_key(party), |bytes| {
        let mut g = Ledger::decode(bytes);
        let r = g.admit(l, Scope::Key, NOW, est, AGE).map(|_| ());
        Ok((g.encode(), r))
    })
    .map_err(|_: crate::store::UpdateError<()>| Shortfall::AskFleet {
        have: 0,
        extra: Amounts::default(),
    })?
}

#[test]
fn a_sync_is_sent_until_its_reply_comes_then_the_next_one() {
    let store = MemoryStore::default();
    let l = limits();
    assert!(track(&store, "key.abc", &l, false));
    assert!(track(&store, "key.abc", &l, false), "tracked once");
    // Give the ledger something to report.
    update::<_, ()>(&store, &ledger_key("key.abc"), |bytes| {
        let mut g = Ledger::decode(bytes);
        g.lease.b = 500;
        g.reserved = 100;
        g.settle(
            g.local_minute,
            Estimate {
                cost: 100,
                tokens: 1,
            },
            60,
            1,
        );
        Ok((g.encode(), ()))
    })
    .unwrap();
    let (seq, payload) = next_sync(&store, 3000, NOW, 100_000).unwrap();
    assert_eq!(seq, 1);
    let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v["ttl_ms"], 3000);
    assert_eq!(v["parties"][0]["id"], "key.abc");
    assert_eq!(v["parties"][0]["spent"], 60);
    assert_eq!(v["parties"][0]["limits"]["max_budget"], 10_000);
    // No reply yet: the same sync again, unchanged.
    assert_eq!(
        next_sync(&store, 3000, NOW, 100_000),
        Some((1, payload.clone()))
    );
    // A reply to another sequence number changes nothing.
    let reply = Reply {
        seq: 7,
        ..Default::default()
    };
    assert!(!synced(&store, 7, &reply, NOW));
    let reply = Reply {
        seq: 1,
        now_ms: NOW + 5,
        parties: vec![PartyReplyEntry {
            id: "key.abc".into(),
            reply: PartyReply {
                granted: Amounts {
                    b: 40,
                    ..Default::default()
                },
                spend: 60,
                ..Default::default()
            },
        }],
        ..Default::default()
    };
    assert!(synced(&store, 1, &reply, NOW));
    let g = Ledger::decode(&store.get(&ledger_key("key.abc")).unwrap().value);
    assert_eq!(g.unsynced_spend, 0);
    assert_eq!(g.fleet.spend, 60);
    assert_eq!(g.clock_offset_ms, 5);
    let (seq, _) = next_sync(&store, 3000, NOW, 100_000).unwrap();
    assert_eq!(seq, 2);
}

#[test]
fn idle_parties_are_forgotten() {
    let store = MemoryStore::default();
    let l = limits();
    assert!(matches!(
        admit_locally(
            &store,
            "key.idle",
            &l,
            Estimate {
                cost: 10,
                tokens: 1
            }
        ),
        Err(Shortfall::AskFleet { .. })
    ));
    let (seq, payload) = next_sync(&store, 3000, NOW, 100_000).unwrap();
    assert!(!payload.contains("key.idle"), "{payload}");
    assert!(synced(
        &store,
        seq,
        &Reply {
            seq,
            ..Default::default()
        },
        NOW
    ));
    let parties = read_parties(&store.get(PARTIES).unwrap().value);
    assert!(parties.is_empty(), "{parties:?}");
}

#[test]
fn parties_are_bounded_and_garbage_reads_as_nothing() {
    let store = MemoryStore::default();
    store.set(PARTIES, b"not json", None).unwrap();
    store.set(SYNC, b"\xff", None).unwrap();
    assert!(track(&store, "team.a", &limits(), false));
    assert_eq!(read_parties(&store.get(PARTIES).unwrap().value).len(), 1);
    let (seq, _) = next_sync(&store, 3000, NOW, 100_000).unwrap();
    assert_eq!(seq, 1);
    assert_eq!(party_id("tollgate.usage.key.abc.g1"), "key.abc.g1");
}

#[test]
fn a_request_is_admitted_in_every_party_or_none() {
    use crate::quota::Party;
    let store = MemoryStore::default();
    let key_limits = Limits {
        max_budget: Some(1_000),
        ..Default::default()
    };
    let team_limits = Limits {
        max_budget: Some(10_000),
        ..Default::default()
    };
    let key = Party {
        scope: Scope::Key,
        key: "tollgate.usage.key.k1",
        limits: &key_limits,
    };
    let team = Party {
        scope: Scope::Team,
        key: "tollgate.usage.team.t1",
        limits: &team_limits,
    };
    let est = Estimate {
        cost: 100,
        tokens: 1,
    };
    // The team holds a lease; the key does not: only the key asks the store.
    update::<_, ()>(&store, &ledger_key("team.t1"), |b| {
        let mut g = Ledger::decode(b);
        g.lease.b = 5_000;
        Ok((g.encode(), ()))
    })
    .unwrap();
    // The key holds a fragment of a lease, too small for the request: it goes toward it.
    update::<_, ()>(&store, &ledger_key("key.k1"), |b| {
        let mut g = Ledger::decode(b);
        g.lease.b = 30;
        Ok((g.encode(), ()))
    })
    .unwrap();
    let parties = [&key, &team];
    let Admitted::Ask {
        local, ask, have, ..
    } = admit(&store, &parties, NOW, est, AGE).unwrap()
    else {
        panic!("the key's lease cannot hold it");
    };
    assert_eq!(ask, vec![0]);
    assert_eq!(have, vec![30]);
    let key_ledger = |s: &MemoryStore| Ledger::decode(&s.get(&ledger_key("key.k1")).unwrap().value);
    assert_eq!(key_ledger(&store).held, 30);
    unhold(&store, &parties, &ask, &have);
    assert_eq!(key_ledger(&store).held, 0);
    assert!(local[0].is_none() && local[1].is_some());
    let team_ledger =
        |s: &MemoryStore| Ledger::decode(&s.get(&ledger_key("team.t1")).unwrap().value);
    assert_eq!(team_ledger(&store).reserved, 100);
    // The store refuses for the key: the team's commitment is undone.
    unadmit(&store, &parties, &local, est);
    assert_eq!(team_ledger(&store).reserved, 0);
    assert_eq!(team_ledger(&store).in_flight, 0);
    // A spent key is refused without asking, and nothing stays committed in the team.
    update::<_, ()>(&store, &ledger_key("key.k1"), |b| {
        let mut g = Ledger::decode(b);
        g.fleet.spend = 1_000;
        Ok((g.encode(), ()))
    })
    .unwrap();
    assert!(matches!(
        admit(&store, &parties, NOW, est, AGE),
        Err(Refusal::Budget { .. })
    ));
    assert_eq!(team_ledger(&store).reserved, 0);
    // Both tracked for the next sync.
    let tracked = read_parties(&store.get(PARTIES).unwrap().value);
    assert_eq!(tracked.len(), 2);
}

#[test]
fn a_worker_reads_the_parties_list_again_only_when_it_changed() {
    let store = MemoryStore::default();
    let l = limits();
    assert!(track(&store, "key.idle", &l, false));
    // Remembered: a list the worker cannot read no longer matters to it...
    let list = store.get(PARTIES).unwrap().value;
    store.set(PARTIES, b"[]", None).unwrap();
    assert!(track(&store, "key.idle", &l, false));
    assert_eq!(store.get(PARTIES).unwrap().value, b"[]");
    // ...but new limits, or another party, are looked up.
    let more = Limits {
        max_budget: Some(20_000),
        ..Default::default()
    };
    assert!(track(&store, "key.idle", &more, false));
    assert_eq!(read_parties(&store.get(PARTIES).unwrap().value).len(), 1);
    store.set(PARTIES, &list, None).unwrap();
    assert!(track(&store, "key.idle", &l, false));
    // The sync drops the idle party and marks its ledger: the next request that touches the
    // ledger takes the mark and tracks the party again.
    next_sync(&store, 3000, NOW, 100_000).unwrap();
    assert!(read_parties(&store.get(PARTIES).unwrap().value).is_empty());
    let ledger = || Ledger::decode(&store.get(&ledger_key("key.idle")).unwrap().value);
    assert!(ledger().untracked);
    let party = key_party("tollgate.usage.key.idle", &l);
    let _ = admit(&store, &[&party], NOW, ten(), AGE);
    assert_eq!(read_parties(&store.get(PARTIES).unwrap().value).len(), 1);
    assert!(!ledger().untracked);
    // Another store (a test's) never matches this worker's memory.
    let other = MemoryStore::default();
    assert!(track(&other, "key.idle", &l, false));
    assert_eq!(read_parties(&other.get(PARTIES).unwrap().value).len(), 1);
}

#[test]
fn a_party_a_request_touches_while_a_sync_drops_it_stays_tracked() {
    let l = limits();
    let store = Spy {
        hook_key: PARTIES,
        ..Default::default()
    };
    assert!(track(&store, "key.race", &l, false));
    // The sync marks the idle party, reads the list to drop it, and, before its write, a request
    // on another worker admits it: it takes the mark and writes the list (the party is there).
    *store.hook.borrow_mut() = Some(Box::new(|inner: &MemoryStore| {
        let l = limits();
        let party = key_party("tollgate.usage.key.race", &l);
        let _ = admit(inner, &[&party], NOW, ten(), AGE);
    }));
    let (seq, _) = next_sync(&store, 3000, NOW, 100_000).unwrap();
    // The sync's write conflicted; read again, the mark is gone and the party stays.
    assert!(store.hook.borrow().is_none(), "the request ran");
    assert!(!Ledger::decode(&store.get(&ledger_key("key.race")).unwrap().value).untracked);
    assert_eq!(read_parties(&store.get(PARTIES).unwrap().value).len(), 1);
    // Without the request, the next sync drops it (and marks it).
    let reply = Reply {
        seq,
        ..Default::default()
    };
    assert!(synced(&store, seq, &reply, NOW));
    next_sync(&store, 3000, NOW, 100_000).unwrap();
    assert!(read_parties(&store.get(PARTIES).unwrap().value).is_empty());
    assert!(Ledger::decode(&store.get(&ledger_key("key.race")).unwrap().value).untracked);
}

/// What [`Spy`] runs: another worker's step, on the same data.
type Hook = Box<dyn FnOnce(&MemoryStore)>;

/// A store that counts the calls made to it, as the .wasm pays for each (a copy across the VM),
/// and runs `hook` once just before the first write of `hook_key` (a request on another worker
/// getting in between a read-modify-write's read and its write).
#[derive(Default)]
struct Spy {
    inner: MemoryStore,
    calls: std::cell::RefCell<Vec<String>>,
    hook_key: &'static str,
    hook: std::cell::RefCell<Option<Hook>>,
}

impl Store for Spy {
    fn get(&self, key: &str) -> Option<crate::store::Versioned> {
        self.calls.borrow_mut().push(format!("get {key}"));
        self.inner.get(key)
    }
    fn set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), crate::store::StoreError> {
        self.calls.borrow_mut().push(format!("set {key}"));
        if key == self.hook_key {
            let hook = self.hook.borrow_mut().take();
            if let Some(hook) = hook {
                hook(&self.inner);
            }
        }
        self.inner.set(key, value, cas)
    }
    fn identity(&self) -> u64 {
        self.inner.identity()
    }
}

#[test]
fn a_leased_request_reads_and_writes_only_its_ledgers() {
    let store = Spy::default();
    let (key_limits, team_limits) = (limits(), limits());
    let key = Party {
        scope: Scope::Key,
        key: "tollgate.usage.key.k9",
        limits: &key_limits,
    };
    let team = Party {
        scope: Scope::Team,
        key: "tollgate.usage.team.t9",
        limits: &team_limits,
    };
    for id in ["key.k9", "team.t9"] {
        update::<_, ()>(&store, &ledger_key(id), |b| {
            let mut g = Ledger::decode(b);
            g.lease.b = 5_000;
            Ok((g.encode(), ()))
        })
        .unwrap();
    }
    let est = Estimate {
        cost: 100,
        tokens: 1,
    };
    let parties = [&key, &team];
    // The first request on this worker tracks both parties (reads and writes the list).
    let Admitted::Local(snaps) = admit(&store, &parties, NOW, est, AGE).unwrap() else {
        panic!("both leases hold it");
    };
    let admitted: Vec<(&Party, u64)> = parties
        .iter()
        .copied()
        .zip(snaps.iter().map(|s| s.minute))
        .collect();
    settle(&store, &admitted, est, 80, 1);
    // The next: each ledger's read and write, nothing else.
    let count = |s: &Spy| {
        let calls = std::mem::take(&mut *s.calls.borrow_mut());
        let ledgers = calls.iter().filter(|c| c.contains(LEDGER_PREFIX)).count();
        (ledgers, calls.len())
    };
    count(&store);
    let Admitted::Local(snaps) = admit(&store, &parties, NOW, est, AGE).unwrap() else {
        panic!("both leases hold it");
    };
    assert_eq!(count(&store), (4, 4));
    let admitted: Vec<(&Party, u64)> = parties
        .iter()
        .copied()
        .zip(snaps.iter().map(|s| s.minute))
        .collect();
    let after = settle(&store, &admitted, est, 80, 1);
    assert_eq!(count(&store), (4, 4));
    assert!(after
        .iter()
        .all(|l| l.is_some_and(|l| l.known_spend() >= 160)));
}
