#![allow(clippy::needless_range_loop)]

use super::*;
use proptest::prelude::*;

/// The store's side of the contract (`store/tollgate.lua`), modelled for native tests: takes off a
/// replica's lease what it reports spent and releases, grants only what is left, and answers in
/// amounts granted.
#[derive(Debug, Default)]
struct Model {
    limits: Limits,
    spend: u64,
    leased_b: u64,
    leased_p: u64,
    minute: u64,
    requests: u64,
    tokens: u64,
    leases: Vec<Lease>,
}

impl Model {
    fn new(limits: Limits, replicas: usize) -> Model {
        Model {
            limits,
            leases: vec![Lease::default(); replicas],
            ..Default::default()
        }
    }

    fn reply(&self, granted: Amounts) -> PartyReply {
        PartyReply {
            granted,
            m: self.minute,
            spend: self.spend,
            leased: self.leased_b,
            requests: self.requests,
            tokens: self.tokens,
            replicas: self.leases.len() as u64,
            ..Default::default()
        }
    }

    fn left_b(&self) -> u64 {
        self.limits.max_budget.map_or(u64::MAX, |m| {
            m.saturating_sub(self.spend).saturating_sub(self.leased_b)
        })
    }

    fn sync(&mut self, replica: usize, s: &PartySync) -> PartyReply {
        self.spend += s.spent;
        let mut lease = self.leases[replica];
        let mut granted = Amounts::default();
        let off = (s.spent + s.release.b).min(lease.b);
        lease.b -= off;
        self.leased_b -= off;
        if self.limits.max_budget.is_some() {
            granted.b = s.grow.b.min(self.left_b());
        } else {
            granted.b = s.grow.b;
        }
        lease.b += granted.b;
        self.leased_b += granted.b;
        if lease.m != self.minute {
            lease.m = self.minute;
            lease.r = 0;
            lease.t = 0;
        } else if s.minute == self.minute {
            let off = s.release.r.min(lease.r);
            lease.r -= off;
            self.requests -= off;
            let off = s.release.t.min(lease.t);
            lease.t -= off;
            self.tokens -= off;
        }
        granted.r = match self.limits.rpm {
            Some(rpm) => s.grow.r.min(rpm.saturating_sub(self.requests)),
            None => s.grow.r,
        };
        lease.r += granted.r;
        self.requests += granted.r;
        granted.t = match self.limits.tpm {
            Some(tpm) => s.grow.t.min(tpm.saturating_sub(self.tokens)),
            None => s.grow.t,
        };
        lease.t += granted.t;
        self.tokens += granted.t;
        let off = s.release.p.min(lease.p);
        lease.p -= off;
        self.leased_p -= off;
        granted.p = match self.limits.parallel {
            Some(p) => s.grow.p.min(p.saturating_sub(self.leased_p)),
            None => s.grow.p,
        };
        lease.p += granted.p;
        self.leased_p += granted.p;
        self.leases[replica] = lease;
        self.reply(granted)
    }

    /// `tg_admit`: `have` of the request's cost is held from the replica's lease already;
    /// `extra` is granted on top as far as the limits leave room.
    fn admit(
        &mut self,
        replica: usize,
        est: Estimate,
        have: u64,
        extra: Amounts,
    ) -> Result<PartyReply, Kind> {
        let b = est.cost - have;
        if self.limits.max_budget.is_some() && b > self.left_b() {
            return Err(Kind::Budget);
        }
        if self.limits.rpm.is_some_and(|r| self.requests >= r) {
            return Err(Kind::Requests);
        }
        if self.limits.parallel.is_some_and(|p| self.leased_p >= p) {
            return Err(Kind::Parallel);
        }
        let lease = &mut self.leases[replica];
        if lease.m != self.minute {
            lease.m = self.minute;
            lease.r = 0;
            lease.t = 0;
        }
        self.leased_b += b;
        self.requests += 1;
        self.tokens += est.tokens;
        self.leased_p += 1;
        let gb = match self.limits.max_budget {
            Some(_) => extra.b.min(self.left_b()),
            None => 0,
        };
        let gr = match self.limits.rpm {
            Some(rpm) => extra.r.min(rpm.saturating_sub(self.requests)),
            None => 0,
        };
        self.leased_b += gb;
        self.requests += gr;
        let lease = &mut self.leases[replica];
        lease.b += b + gb;
        lease.r += 1 + gr;
        lease.t += est.tokens;
        lease.p += 1;
        Ok(self.reply(Amounts {
            b: b + gb,
            r: 1 + gr,
            t: est.tokens,
            p: 1,
        }))
    }

    /// What the fleet holds at most: spent, plus every lease.
    fn committed(&self) -> u64 {
        self.spend + self.leased_b
    }
}

fn budget(max: u64) -> Limits {
    Limits {
        max_budget: Some(max),
        ..Default::default()
    }
}

const EST: Estimate = Estimate {
    cost: 100,
    tokens: 10,
};
const NOW: u64 = 1_790_000_000_000;

/// A grant of exactly the request, in `minute`.
fn at_minute(minute: u64) -> FleetGrant {
    FleetGrant {
        minute,
        ..Default::default()
    }
}
/// Leases never age out (the tests of ageing give their own).
const AGE: u64 = u64::MAX;

/// Admits through the lease, asking the model when it must, as the filter does.
fn admit(
    ledger: &mut Ledger,
    model: &mut Model,
    replica: usize,
    l: &Limits,
    est: Estimate,
) -> bool {
    admit_at(ledger, model, replica, l, est, NOW)
}

fn admit_at(
    ledger: &mut Ledger,
    model: &mut Model,
    replica: usize,
    l: &Limits,
    est: Estimate,
    now: u64,
) -> bool {
    match ledger.admit(l, Scope::Key, now, est, AGE) {
        Ok(_) => true,
        Err(Shortfall::Refused(_)) => false,
        Err(Shortfall::AskFleet { have, extra }) => match model.admit(replica, est, have, extra) {
            Ok(r) => {
                let grant = FleetGrant {
                    have,
                    granted: Some(r.granted),
                    minute: r.m,
                    fleet: Some(r.fleet()),
                };
                ledger.admitted_by_fleet(l, now, est, grant, AGE);
                true
            }
            Err(kind) => {
                ledger.unhold(have);
                ledger.refused_by_fleet(now, kind, None);
                false
            }
        },
    }
}

#[test]
fn encodes_round_trip() {
    let mut l = Ledger {
        lease: Lease {
            b: 1,
            r: 2,
            t: 3,
            p: 4,
            m: 5,
        },
        ..Default::default()
    };
    l.fleet.spend = 7;
    l.clock_offset_ms = -1234;
    l.unsynced_spend = 9;
    l.refused_until_ms = 10;
    l.refused = 2;
    l.confirmed_ms = 11;
    let back = Ledger::decode(&l.encode());
    assert_eq!(back, l);
    assert_eq!(Ledger::decode(b"garbage"), Ledger::default());
}

#[test]
fn an_idle_ledger_asks_then_admits_locally_once_leased() {
    let l = budget(10_000);
    let mut model = Model::new(l.clone(), 1);
    let mut ledger = Ledger::default();
    // Nothing leased yet: the first request asks the store.
    assert!(matches!(
        ledger.admit(&l, Scope::Key, NOW, EST, AGE),
        Err(Shortfall::AskFleet { .. })
    ));
    assert!(admit(&mut ledger, &mut model, 0, &l, EST));
    ledger.settle(ledger.local_minute, EST, 80, 8);
    // The sync reports the spend and asks for a lease sized to the demand.
    let s = ledger.sync(&l, NOW);
    assert_eq!(s.spent, 80);
    let reply = model.sync(0, &s);
    ledger.synced(NOW, NOW, &reply);
    assert_eq!(model.spend, 80);
    assert_eq!(ledger.unsynced_spend, 0);
    assert!(ledger.lease.b >= EST.cost, "{:?}", ledger.lease);
    // Now it admits without the store.
    assert!(ledger.admit(&l, Scope::Key, NOW, EST, AGE).is_ok());
    assert!(model.committed() <= 10_000);
}

#[test]
fn a_spent_budget_is_refused_without_asking() {
    let l = budget(1_000);
    let mut ledger = Ledger::default();
    ledger.fleet.spend = 1_000;
    match ledger.admit(&l, Scope::Key, NOW, EST, AGE) {
        Err(Shortfall::Refused(Refusal::Budget { spend, max, .. })) => {
            assert_eq!((spend, max), (1_000, 1_000))
        }
        other => panic!("{other:?}"),
    }
}

/// The fleet's state with this much spent.
fn spent(spend: u64) -> Fleet {
    Fleet {
        spend,
        ..Default::default()
    }
}

#[test]
fn a_refusal_is_remembered_briefly() {
    let l = budget(1_000);
    let mut ledger = Ledger::default();
    // The store has less left than the request needs.
    ledger.refused_by_fleet(NOW, Kind::Budget, Some(spent(1_001 - EST.cost)));
    assert!(matches!(
        ledger.admit(&l, Scope::Key, NOW + 10, EST, AGE),
        Err(Shortfall::Refused(Refusal::Budget { .. }))
    ));
    // A request within what the store said is left (one capped to it) asks the store.
    let small = Estimate {
        cost: EST.cost - 1,
        ..EST
    };
    assert!(matches!(
        ledger.admit(&l, Scope::Key, NOW + 10, small, AGE),
        Err(Shortfall::AskFleet { .. })
    ));
    assert!(matches!(
        ledger.admit(&l, Scope::Key, NOW + REFUSAL_MEMORY_MS + 1, EST, AGE),
        Err(Shortfall::AskFleet { .. })
    ));
}

/// Every request decodes the ledger afresh: the remembered refusal must survive it.
#[test]
fn a_remembered_refusal_survives_the_record() {
    let l = budget(1_000);
    let mut ledger = Ledger::default();
    ledger.refused_by_fleet(NOW, Kind::Budget, Some(spent(1_001 - EST.cost)));
    let mut back = Ledger::decode(&ledger.encode());
    assert!(matches!(
        back.admit(&l, Scope::Key, NOW + 10, EST, AGE),
        Err(Shortfall::Refused(Refusal::Budget { .. }))
    ));
}

/// A lease the store has not confirmed for longer than the store keeps a silent replica alive
/// may have been reclaimed and given to others: it admits nothing until the store answers.
#[test]
fn a_lease_unconfirmed_too_long_holds_nothing() {
    const MAX_AGE: u64 = 2_000;
    let l = budget(100_000);
    let mut model = Model::new(l.clone(), 1);
    let mut ledger = Ledger::default();
    for _ in 0..10 {
        assert!(admit(&mut ledger, &mut model, 0, &l, EST));
    }
    let r = model.sync(0, &ledger.sync(&l, NOW));
    ledger.synced(NOW, NOW, &r);
    assert!(ledger.lease.b >= EST.cost);
    assert!(ledger
        .admit(&l, Scope::Key, NOW + MAX_AGE, EST, MAX_AGE)
        .is_ok());
    let late = NOW + MAX_AGE + 1;
    assert!(matches!(
        ledger.admit(&l, Scope::Key, late, EST, MAX_AGE),
        Err(Shortfall::AskFleet { .. })
    ));
    // A grant of tg_admit vouches for itself, not for the old lease...
    let grant = model.admit(0, EST, 0, Amounts::default()).unwrap();
    ledger.admitted_by_fleet(&l, late, EST, at_minute(grant.m), MAX_AGE);
    assert!(matches!(
        ledger.admit(&l, Scope::Key, late, EST, MAX_AGE),
        Err(Shortfall::AskFleet { .. })
    ));
    // ...the next sync's reply does.
    let r = model.sync(0, &ledger.sync(&l, late));
    ledger.synced(late, late, &r);
    assert!(ledger.admit(&l, Scope::Key, late, EST, MAX_AGE).is_ok());
    // A party that held nothing is vouched for by its first grant.
    let mut fresh = Ledger::default();
    let grant = model.admit(0, EST, 0, Amounts::default()).unwrap();
    fresh.admitted_by_fleet(&l, late, EST, at_minute(grant.m), MAX_AGE);
    assert_eq!(fresh.confirmed_ms, late);
}

/// A grant of `tg_admit` and the reply of a sync sent before it add up, in either order.
#[test]
fn replies_that_cross_add_up() {
    let l = budget(100_000);
    for admit_first in [true, false] {
        let mut model = Model::new(l.clone(), 1);
        let mut ledger = Ledger::default();
        for _ in 0..5 {
            assert!(admit(&mut ledger, &mut model, 0, &l, EST));
        }
        let s = ledger.sync(&l, NOW);
        let (sync_reply, admit_reply);
        if admit_first {
            admit_reply = model.admit(0, EST, 0, Amounts::default()).unwrap();
            sync_reply = model.sync(0, &s);
        } else {
            sync_reply = model.sync(0, &s);
            admit_reply = model.admit(0, EST, 0, Amounts::default()).unwrap();
        }
        ledger.admitted_by_fleet(&l, NOW, EST, at_minute(admit_reply.m), AGE);
        ledger.synced(NOW, NOW, &sync_reply);
        assert_eq!(
            ledger.lease.b, model.leases[0].b,
            "admit first: {admit_first}"
        );
    }
}

#[test]
fn a_lease_shrinks_only_by_the_replica() {
    let l = budget(100_000);
    let mut model = Model::new(l.clone(), 1);
    let mut ledger = Ledger::default();
    for _ in 0..20 {
        assert!(admit(&mut ledger, &mut model, 0, &l, EST));
    }
    let r = model.sync(0, &ledger.sync(&l, NOW));
    ledger.synced(NOW, NOW, &r);
    let leased = ledger.lease.b;
    assert!(leased >= 20 * EST.cost);
    // Idle ticks: demand decays, the replica releases what it does not hold.
    for i in 0..40 {
        if i == 0 {
            for _ in 0..20 {
                ledger.settle(ledger.local_minute, EST, EST.cost, EST.tokens);
            }
        }
        let s = ledger.sync(&l, NOW);
        assert!(
            ledger.lease.b >= ledger.reserved,
            "never below what is held"
        );
        let r = model.sync(0, &s);
        ledger.synced(NOW, NOW, &r);
    }
    assert_eq!(ledger.lease.b, 0);
    assert_eq!(model.leased_b, 0);
    assert_eq!(model.spend, 20 * EST.cost);
}

/// One step of a random interleaving of three replicas' work.
#[derive(Debug, Clone)]
enum Step {
    Admit(usize, u64),
    Settle(usize),
    SendSync(usize),
    ReplySync(usize),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0usize..3, 1u64..300).prop_map(|(r, c)| Step::Admit(r, c)),
            3 => (0usize..3).prop_map(Step::Settle),
            1 => (0usize..3).prop_map(Step::SendSync),
            1 => (0usize..3).prop_map(Step::ReplySync),
        ],
        1..400,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// However three replicas interleave admissions, settlements and syncs (replies held back and
    /// applied late), the fleet never commits more than the budget, every micro-dollar settled is
    /// in the store's spend exactly once, and no request is refused while the budget could hold
    /// it and no lease holds it elsewhere.
    #[test]
    fn the_budget_holds_across_replicas(steps in steps(), max in 500u64..20_000) {
        let l = budget(max);
        let mut model = Model::new(l.clone(), 3);
        let mut ledgers = [Ledger::default(), Ledger::default(), Ledger::default()];
        let mut in_flight: [Vec<Estimate>; 3] = Default::default();
        let mut pending: [Option<PartySync>; 3] = [None, None, None];
        let mut settled_total = 0u64;
        for step in steps {
            match step {
                Step::Admit(r, cost) => {
                    let est = Estimate { cost, tokens: 1 };
                    if admit(&mut ledgers[r], &mut model, r, &l, est) {
                        in_flight[r].push(est);
                    }
                }
                Step::Settle(r) => {
                    if let Some(est) = in_flight[r].pop() {
                        // Requests cost at most their estimate.
                        let cost = est.cost * 3 / 4;
                        ledgers[r].settle(ledgers[r].local_minute, est, cost, 1);
                        settled_total += cost;
                    }
                }
                Step::SendSync(r) => {
                    if pending[r].is_none() {
                        pending[r] = Some(ledgers[r].sync(&l, NOW));
                    }
                }
                Step::ReplySync(r) => {
                    if let Some(s) = pending[r].take() {
                        let reply = model.sync(r, &s);
                        ledgers[r].synced(NOW, NOW, &reply);
                    }
                }
            }
            prop_assert!(model.committed() <= max, "{model:?}");
            // What a replica has committed (in flight, or settled and not yet acknowledged) is
            // within what the store leases it: the store's lease still counts unacknowledged spend.
            for (r, g) in ledgers.iter().enumerate() {
                prop_assert!(
                    g.reserved + g.unsynced_spend <= model.leases[r].b,
                    "replica {}: {:?} vs {:?}", r, g, model.leases[r]
                );
            }
        }
        // Drain: everything settles and syncs.
        for r in 0..3 {
            while let Some(est) = in_flight[r].pop() {
                let cost = est.cost * 3 / 4;
                ledgers[r].settle(ledgers[r].local_minute, est, cost, 1);
                settled_total += cost;
            }
            if let Some(s) = pending[r].take() {
                let reply = model.sync(r, &s);
                ledgers[r].synced(NOW, NOW, &reply);
            }
            let s = ledgers[r].sync(&l, NOW);
            let reply = model.sync(r, &s);
            ledgers[r].synced(NOW, NOW, &reply);
        }
        prop_assert_eq!(model.spend, settled_total);
        prop_assert!(model.committed() <= max);
    }
}

/// A burst over three busy replicas on a budget of 20 requests admits 20: leases shrink to
/// nothing near the limit and the last requests are admitted by the store one by one.
#[test]
fn a_burst_admits_the_budget_exactly() {
    let l = budget(20 * EST.cost);
    let mut model = Model::new(l.clone(), 3);
    let mut ledgers = [Ledger::default(), Ledger::default(), Ledger::default()];
    let mut admitted = 0;
    for round in 0..100u64 {
        // Ten milliseconds a round: a tick is 250.
        let now = NOW + round * 10;
        for r in 0..3 {
            if admit_at(&mut ledgers[r], &mut model, r, &l, EST, now) {
                admitted += 1;
            }
            if round % 25 == r as u64 * 8 {
                let s = ledgers[r].sync(&l, now);
                let reply = model.sync(r, &s);
                ledgers[r].synced(now, now, &reply);
            }
        }
    }
    assert_eq!(admitted, 20);
}

/// Requests per minute across replicas: exactly the limit in a minute, fresh in the next.
#[test]
fn rpm_holds_across_replicas() {
    let l = Limits {
        rpm: Some(30),
        ..Default::default()
    };
    let mut model = Model::new(l.clone(), 3);
    let mut ledgers = [Ledger::default(), Ledger::default(), Ledger::default()];
    model.minute = NOW / 60_000;
    let mut admitted = 0;
    for round in 0..100 {
        for r in 0..3 {
            if admit(&mut ledgers[r], &mut model, r, &l, EST) {
                admitted += 1;
                ledgers[r].settle(ledgers[r].local_minute, EST, 0, 0);
            }
            if round % 3 == r {
                let s = ledgers[r].sync(&l, NOW);
                let reply = model.sync(r, &s);
                ledgers[r].synced(NOW, NOW, &reply);
            }
        }
    }
    assert_eq!(admitted, 30);
    assert!(model.requests <= 30);
}

/// A request costing less than it reserves leaves fragments of lease too small for the next one:
/// they go toward it when the store is asked, so a replica is refused only when the fleet's
/// budget truly has no room (spend + estimate > max), however its syncs fall.
#[test]
fn fragments_of_a_lease_do_not_refuse_early() {
    let l = budget(1_000);
    for sync_every in [1, 3, 5, 1_000] {
        let mut model = Model::new(l.clone(), 1);
        let mut ledger = Ledger::default();
        let mut admitted = 0;
        for n in 0..40 {
            if admit(&mut ledger, &mut model, 0, &l, EST) {
                admitted += 1;
                ledger.settle(ledger.local_minute, EST, 60, 6);
            }
            if n % sync_every == 0 {
                let r = model.sync(0, &ledger.sync(&l, NOW));
                ledger.synced(NOW, NOW, &r);
            }
            // What the store believes is never more than the budget.
            assert!(model.committed() <= 1_000, "sync every {sync_every}");
            // A refusal is remembered briefly; time moves on between requests here.
            ledger.refused_until_ms = 0;
        }
        // 60 per request, 100 reserved: the 16th fits exactly (900 + 100), the 17th does not.
        assert_eq!(admitted, 16, "sync every {sync_every}");
        assert_eq!(ledger.held, 0);
    }
}

/// A request that must ask the store (a burst's start, a new minute) asks for the requests that
/// follow too, so that they do not each wait for the store until the next sync; near a limit it
/// asks for nothing more than itself.
#[test]
fn an_asking_request_brings_a_lease_for_the_next_ones() {
    let l = Limits {
        max_budget: Some(10_000_000),
        rpm: Some(1_000_000),
        ..Default::default()
    };
    let mut model = Model::new(l.clone(), 1);
    model.minute = NOW / 60_000;
    let mut ledger = Ledger::default();
    let mut asked = 0;
    for _ in 0..20 {
        if matches!(
            ledger.clone().admit(&l, Scope::Key, NOW, EST, AGE),
            Err(Shortfall::AskFleet { .. })
        ) {
            asked += 1;
        }
        assert!(admit(&mut ledger, &mut model, 0, &l, EST));
    }
    // The first asks; its extra holds the next ones (two ticks of demand, doubling as it grows).
    assert!(asked <= 5, "{asked} of 20 asked the store");
    assert!(model.committed() <= 10_000_000);

    // Near the limit (a lone replica's share of half of what is left under 16 requests): no extra.
    let l = budget(3_000);
    let mut ledger = Ledger::default();
    ledger.fleet.replicas = 1;
    match ledger.admit(&l, Scope::Key, NOW, EST, AGE) {
        Err(Shortfall::AskFleet { extra, .. }) => assert_eq!(extra, Amounts::default()),
        other => panic!("{other:?}"),
    }
}

/// Runs one replica at 10 requests per 250 ms tick for 10 s, from 5 s before a minute ends,
/// syncing at the end of each tick: returns the requests that asked the store after the first
/// second, and the requests admitted in each minute (as the ledger counts them).
fn across_a_minute(l: &Limits) -> (u64, std::collections::BTreeMap<u64, u64>) {
    let start = (NOW / 60_000) * 60_000 + 55_000;
    let mut model = Model::new(l.clone(), 1);
    let mut ledger = Ledger::default();
    let mut asked = 0;
    let mut per_minute = std::collections::BTreeMap::new();
    let set_minute = |model: &mut Model, t: u64| {
        if model.minute != t / 60_000 {
            model.minute = t / 60_000;
            model.requests = 0;
            model.tokens = 0;
        }
    };
    for tick in 0..40 {
        let now = start + tick * 250;
        for i in 0..10 {
            let t = now + i * 25;
            set_minute(&mut model, t);
            let asks = matches!(
                ledger.clone().admit(l, Scope::Key, t, EST, AGE),
                Err(Shortfall::AskFleet { .. })
            );
            if admit_at(&mut ledger, &mut model, 0, l, EST, t) {
                asked += u64::from(asks && tick >= 4);
                *per_minute.entry(ledger.local_minute).or_default() += 1;
                ledger.settle(ledger.local_minute, EST, 0, 0);
            }
            ledger.refused_until_ms = 0;
        }
        let t = now + 249;
        set_minute(&mut model, t);
        let reply = model.sync(0, &ledger.sync(l, t));
        ledger.synced(t, t, &reply);
    }
    (asked, per_minute)
}

/// A warm lease crosses the end of a minute without asking the store: what it has left of the
/// minute just ended serves until the next sync brings the new minute's (within
/// [`MINUTE_GRACE_MS`]), counted in the minute that granted it; and still no minute admits more
/// than the limit.
#[test]
fn a_warm_lease_crosses_a_minute_without_asking_the_store() {
    let l = Limits {
        rpm: Some(100_000),
        tpm: Some(10_000_000),
        ..Default::default()
    };
    let (asked, per_minute) = across_a_minute(&l);
    assert_eq!(asked, 0, "{per_minute:?}");
    assert_eq!(per_minute.values().sum::<u64>(), 400);
    assert_eq!(per_minute.len(), 2);

    // Near the limit, each minute still admits at most rpm.
    let l = Limits {
        rpm: Some(150),
        ..Default::default()
    };
    let (_, per_minute) = across_a_minute(&l);
    assert_eq!(per_minute.len(), 2, "{per_minute:?}");
    assert!(per_minute.values().all(|&n| n <= 150), "{per_minute:?}");
    // 200 asked for in each minute's part of the run: exactly the limit admitted in each.
    assert_eq!(per_minute.values().copied().collect::<Vec<_>>(), [150, 150]);
}

/// Without a sync, the grace ends after [`MINUTE_GRACE_MS`]: the old minute's lease no longer
/// serves, and the request asks the store.
#[test]
fn the_grace_of_a_minute_is_bounded() {
    let l = Limits {
        rpm: Some(100_000),
        ..Default::default()
    };
    let end = (NOW / 60_000 + 1) * 60_000;
    let mut ledger = Ledger {
        lease: Lease {
            r: 100,
            m: NOW / 60_000,
            ..Default::default()
        },
        local_minute: NOW / 60_000,
        confirmed_ms: end,
        ..Default::default()
    };
    assert!(ledger.admit(&l, Scope::Key, end + 10, EST, AGE).is_ok());
    assert_eq!(ledger.local_minute, NOW / 60_000);
    assert!(matches!(
        ledger.admit(&l, Scope::Key, end + MINUTE_GRACE_MS, EST, AGE),
        Err(Shortfall::AskFleet { .. })
    ));
    assert_eq!(ledger.local_minute, NOW / 60_000 + 1);
}

/// What a replica knows is left of a budget fleet-wide: the pool no replica holds, plus its own
/// lease's room; never more than the budget less the spend it knows.
#[test]
fn budget_left_is_the_pool_and_the_lease_room() {
    let mut g = Ledger::default();
    assert_eq!(g.budget_left(1_000), 1_000);
    // The store: 300 spent, 400 leased (this replica's 250 of it); here 100 reserved, 50 settled.
    g.fleet.spend = 300;
    g.fleet.leased = 400;
    g.lease.b = 250;
    g.reserved = 100;
    g.unsynced_spend = 50;
    assert_eq!(g.budget_left(1_000), 300 + 100);
    // Spend known past the budget leaves nothing, whatever the lease says.
    g.unsynced_spend = 800;
    assert_eq!(g.budget_left(1_000), 0);
}
