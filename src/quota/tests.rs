use super::*;
use crate::store::MemoryStore;

fn limits() -> Limits {
    Limits {
        max_budget: Some(1_000),
        budget_duration: Some(60),
        soft_budget: Some(800),
        rpm: Some(3),
        tpm: Some(500),
        parallel: Some(2),
    }
}

#[test]
fn encodes_round_trip_and_tolerates_garbage() {
    let c = Counters {
        window_start: 1,
        spend: 2,
        reserved: 3,
        lifetime_spend: 4,
        minute: 5,
        requests: 6,
        tokens: 7,
        tokens_reserved: 8,
        in_flight: 9,
    };
    assert_eq!(Counters::decode(&c.encode()), c);
    assert_eq!(Counters::decode(b""), Counters::default());
    assert_eq!(Counters::decode(b"\x07garbage"), Counters::default());
    assert_eq!(Counters::decode(&c.encode()[..20]).spend, 2);
}

#[test]
fn admits_until_each_limit() {
    let l = limits();
    let mut c = Counters::default();
    let est = Estimate {
        cost: 100,
        tokens: 100,
    };
    let a = admit(&mut c, &l, Scope::Key, 6_000, est).unwrap();
    assert_eq!(
        (a.remaining_requests, a.remaining_tokens, a.reset_secs),
        (Some(2), Some(400), 60)
    );
    admit(&mut c, &l, Scope::Key, 6_001, est).unwrap();
    assert_eq!(
        admit(&mut c, &l, Scope::Key, 6_002, est),
        Err(Refusal::Parallel {
            scope: Scope::Key,
            limit: 2
        })
    );
    settle(
        &mut c,
        &l,
        6_003,
        100,
        est,
        Charge {
            cost: 40,
            tokens: 30,
        },
    );
    admit(&mut c, &l, Scope::Key, 6_004, est).unwrap();
    settle(
        &mut c,
        &l,
        6_005,
        100,
        est,
        Charge {
            cost: 40,
            tokens: 30,
        },
    );
    // Three requests this minute: the fourth is refused until the minute turns.
    assert!(matches!(
        admit(&mut c, &l, Scope::Key, 6_006, est),
        Err(Refusal::Requests {
            limit: 3,
            reset_secs: 54,
            ..
        })
    ));
    admit(&mut c, &l, Scope::Key, 6_060, est).unwrap();
    assert_eq!(c.requests, 1);
}

#[test]
fn reservations_keep_concurrent_requests_inside_the_budget() {
    let l = Limits {
        max_budget: Some(1_000),
        ..Default::default()
    };
    let mut c = Counters::default();
    let est = Estimate {
        cost: 300,
        tokens: 0,
    };
    for _ in 0..3 {
        admit(&mut c, &l, Scope::Key, 10, est).unwrap();
    }
    // 900 reserved: a fourth worst case would pass the budget.
    assert!(matches!(
        admit(&mut c, &l, Scope::Key, 10, est),
        Err(Refusal::Budget { reserved: 900, .. })
    ));
    for _ in 0..3 {
        settle(
            &mut c,
            &l,
            11,
            0,
            est,
            Charge {
                cost: 250,
                tokens: 0,
            },
        );
    }
    assert_eq!((c.spend, c.reserved, c.in_flight), (750, 0, 0));
    assert!(matches!(
        admit(&mut c, &l, Scope::Key, 12, est),
        Err(Refusal::Budget { spend: 750, .. })
    ));
    assert!(admit(
        &mut c,
        &l,
        Scope::Key,
        12,
        Estimate {
            cost: 250,
            tokens: 0
        }
    )
    .is_ok());
}

#[test]
fn budget_windows_reset_lazily_and_stay_aligned() {
    let l = Limits {
        max_budget: Some(100),
        budget_duration: Some(60),
        ..Default::default()
    };
    let mut c = Counters::default();
    admit(
        &mut c,
        &l,
        Scope::Key,
        1_000,
        Estimate {
            cost: 100,
            tokens: 0,
        },
    )
    .unwrap();
    settle(
        &mut c,
        &l,
        1_001,
        16,
        Estimate {
            cost: 100,
            tokens: 0,
        },
        Charge {
            cost: 100,
            tokens: 0,
        },
    );
    assert!(matches!(
        admit(&mut c, &l, Scope::Key, 1_059, Estimate::default()),
        Err(Refusal::Budget {
            reset_at: Some(1_060),
            ..
        })
    ));
    admit(&mut c, &l, Scope::Key, 1_130, Estimate::default()).unwrap();
    assert_eq!((c.spend, c.window_start, c.lifetime_spend), (0, 1_120, 100));
}

#[test]
fn tokens_count_reservations_and_actuals() {
    let l = Limits {
        tpm: Some(1_000),
        ..Default::default()
    };
    let mut c = Counters::default();
    admit(
        &mut c,
        &l,
        Scope::Key,
        60,
        Estimate {
            cost: 0,
            tokens: 600,
        },
    )
    .unwrap();
    assert!(matches!(
        admit(
            &mut c,
            &l,
            Scope::Key,
            61,
            Estimate {
                cost: 0,
                tokens: 600
            }
        ),
        Err(Refusal::Tokens { used: 600, .. })
    ));
    settle(
        &mut c,
        &l,
        62,
        1,
        Estimate {
            cost: 0,
            tokens: 600,
        },
        Charge {
            cost: 0,
            tokens: 150,
        },
    );
    assert_eq!((c.tokens, c.tokens_reserved), (150, 0));
    admit(
        &mut c,
        &l,
        Scope::Key,
        63,
        Estimate {
            cost: 0,
            tokens: 600,
        },
    )
    .unwrap();
}

#[test]
fn a_team_refusal_undoes_the_key_admission() {
    let store = MemoryStore::default();
    let key_limits = Limits::default();
    let team_limits = Limits {
        rpm: Some(1),
        ..Default::default()
    };
    let key = Party {
        scope: Scope::Key,
        key: "k",
        limits: &key_limits,
    };
    let team = Party {
        scope: Scope::Team,
        key: "t",
        limits: &team_limits,
    };
    ensure_record(&store, "k", 120);
    ensure_record(&store, "t", 120);
    let est = Estimate { cost: 5, tokens: 7 };
    admit_all(&store, &key, Some(&team), 120, est).unwrap();
    assert!(matches!(
        admit_all(&store, &key, Some(&team), 121, est),
        Err(Refusal::Requests {
            scope: Scope::Team,
            ..
        })
    ));
    let k = Counters::decode(&store.get("k").unwrap().value);
    assert_eq!(
        (k.requests, k.in_flight, k.reserved, k.tokens_reserved),
        (1, 1, 5, 7)
    );
}

/// Many "workers" interleave admissions and settlements on one store; whatever the order, the
/// budget is never passed by more than one request's (actual - estimate), and every count returns
/// to zero.
#[test]
fn interleaved_workers_never_overshoot() {
    let store = MemoryStore::default();
    let l = Limits {
        max_budget: Some(10_000),
        parallel: Some(8),
        ..Default::default()
    };
    let party = Party {
        scope: Scope::Key,
        key: "k",
        limits: &l,
    };
    ensure_record(&store, "k", 0);
    let est = Estimate {
        cost: 700,
        tokens: 10,
    };
    let mut seed = 7u64;
    let mut in_flight: Vec<Admission> = Vec::new();
    let mut charged = 0u64;
    for step in 0..5_000u64 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if seed >> 63 == 0 && !in_flight.is_empty() {
            let a = in_flight.swap_remove((seed as usize >> 8) % in_flight.len());
            // Actual cost varies below (and sometimes 10% above) the estimate.
            let actual = (seed >> 20) % 770;
            let after = settle_one(
                &store,
                &party,
                step / 100,
                a.key.map_or(0, |s| s.minute),
                a.estimate,
                Charge {
                    cost: actual,
                    tokens: 1,
                },
            )
            .unwrap();
            charged += actual;
            assert!(after.spend <= 10_000 + 70, "spend {} overshot", after.spend);
        } else if let Ok(a) = admit_all(&store, &party, None, step / 100, est) {
            in_flight.push(a);
        }
    }
    for a in in_flight.drain(..) {
        settle_one(
            &store,
            &party,
            50,
            a.key.map_or(0, |s| s.minute),
            a.estimate,
            Charge::default(),
        )
        .unwrap();
    }
    let c = Counters::decode(&store.get("k").unwrap().value);
    assert_eq!((c.in_flight, c.reserved), (0, 0));
    assert_eq!(c.spend, charged);
}

#[test]
fn money_conversions() {
    assert_eq!(micro(25.0), 25_000_000);
    assert_eq!(micro(0.0000014), 1);
    assert_eq!(micro(-3.0), 0);
    assert_eq!(micro(f64::NAN), 0);
    assert_eq!(usd(1_500_000), 1.5);
}

/// The proxy-wide party is admitted with the key's, all or none: its refusal undoes the key's
/// admission, and a settlement charges both.
#[test]
fn the_proxy_party_is_admitted_and_settled_with_the_key() {
    let store = MemoryStore::default();
    let key_limits = Limits::default();
    let proxy_limits = Limits {
        max_budget: Some(100),
        parallel: Some(2),
        ..Default::default()
    };
    let key = Party {
        scope: Scope::Key,
        key: "k",
        limits: &key_limits,
    };
    let proxy = Party {
        scope: Scope::Proxy,
        key: PROXY_RECORD,
        limits: &proxy_limits,
    };
    ensure_record(&store, "k", 120);
    ensure_record(&store, PROXY_RECORD, 120);
    let est = Estimate {
        cost: 30,
        tokens: 1,
    };
    let list = [&key, &proxy];
    let a = admit_parties(&store, &list, 120, est).unwrap();
    let b = admit_parties(&store, &list, 120, est).unwrap();
    // A third in flight is over the proxy's parallel limit; the key's admission is undone.
    assert_eq!(
        admit_parties(&store, &list, 120, est),
        Err(Refusal::Parallel {
            scope: Scope::Proxy,
            limit: 2
        })
    );
    let k = Counters::decode(&store.get("k").unwrap().value);
    assert_eq!((k.in_flight, k.reserved, k.requests), (2, 60, 2));
    let admission = Admission::of(est, &list, &a);
    assert!(admission.key.is_some() && admission.proxy.is_some() && admission.team.is_none());
    for snaps in [&a, &b] {
        for (p, s) in list.iter().zip(snaps.iter()) {
            settle_one(
                &store,
                p,
                121,
                s.minute,
                est,
                Charge {
                    cost: 30,
                    tokens: 1,
                },
            );
        }
    }
    let p = Counters::decode(&store.get(PROXY_RECORD).unwrap().value);
    assert_eq!((p.spend, p.reserved, p.in_flight), (60, 0, 0));
    // 60 spent + 30 worst case fits 100; with one more in flight it would not.
    let c = admit_parties(&store, &list, 122, est).unwrap();
    assert!(matches!(
        admit_parties(&store, &list, 122, est),
        Err(Refusal::Budget {
            scope: Scope::Proxy,
            spend: 60,
            reserved: 30,
            max: 100,
            ..
        })
    ));
    assert_eq!(c.len(), 2);
}

/// The proxy-wide budget window resets by its `budget_duration`.
#[test]
fn the_proxy_budget_resets_by_its_duration() {
    let store = MemoryStore::default();
    let l = Limits {
        max_budget: Some(50),
        budget_duration: Some(30),
        ..Default::default()
    };
    let proxy = Party {
        scope: Scope::Proxy,
        key: PROXY_RECORD,
        limits: &l,
    };
    ensure_record(&store, PROXY_RECORD, 1_000);
    let est = Estimate {
        cost: 50,
        tokens: 0,
    };
    let s = admit_parties(&store, &[&proxy], 1_000, est).unwrap();
    settle_one(
        &store,
        &proxy,
        1_001,
        s[0].minute,
        est,
        Charge {
            cost: 50,
            tokens: 0,
        },
    );
    assert!(matches!(
        admit_parties(&store, &[&proxy], 1_029, est),
        Err(Refusal::Budget {
            reset_at: Some(1_030),
            ..
        })
    ));
    assert!(admit_parties(&store, &[&proxy], 1_030, est).is_ok());
}
