//! Pure retention logic (like PBS's tests/prune.rs): no store involved.

use chrono::{DateTime, TimeZone, Utc};
use lifeboat_datastore::prune::{select_prune, select_rotation, KeepOptions, Mark};

fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn list(times: &[DateTime<Utc>]) -> Vec<(String, DateTime<Utc>)> {
    times
        .iter()
        .map(|t| (t.format("%Y-%m-%dT%H:%M").to_string(), *t))
        .collect()
}

fn kept(r: &[(String, Mark)]) -> Vec<String> {
    let mut k: Vec<String> = r
        .iter()
        .filter(|(_, m)| *m == Mark::Keep)
        .map(|(id, _)| id.clone())
        .collect();
    k.sort();
    k
}

#[test]
fn keep_last() {
    let l = list(&[
        t(2026, 1, 1, 0, 0),
        t(2026, 1, 2, 0, 0),
        t(2026, 1, 3, 0, 0),
    ]);
    let r = select_prune(
        &l,
        &KeepOptions {
            last: 2,
            ..Default::default()
        },
    );
    assert_eq!(kept(&r), vec!["2026-01-02T00:00", "2026-01-03T00:00"]);
    assert_eq!(r[0].0, "2026-01-03T00:00", "newest first");
}

#[test]
fn no_rule_keeps_everything() {
    let l = list(&[t(2026, 1, 1, 0, 0), t(2026, 1, 2, 0, 0)]);
    assert_eq!(kept(&select_prune(&l, &KeepOptions::default())).len(), 2);
}

#[test]
fn keep_hourly_takes_newest_of_each_hour() {
    let l = list(&[
        t(2026, 1, 1, 10, 5),
        t(2026, 1, 1, 10, 50),
        t(2026, 1, 1, 11, 1),
        t(2026, 1, 1, 11, 30),
        t(2026, 1, 1, 12, 0),
    ]);
    let r = select_prune(
        &l,
        &KeepOptions {
            hourly: 2,
            ..Default::default()
        },
    );
    assert_eq!(kept(&r), vec!["2026-01-01T11:30", "2026-01-01T12:00"]);
}

#[test]
fn keep_daily_weekly_monthly() {
    // Every day at 01:00 for 70 days.
    let start = t(2026, 1, 1, 1, 0);
    let times: Vec<_> = (0..70).map(|d| start + chrono::Duration::days(d)).collect();
    let l = list(&times);
    let r = select_prune(
        &l,
        &KeepOptions {
            daily: 7,
            ..Default::default()
        },
    );
    assert_eq!(kept(&r).len(), 7);
    assert_eq!(kept(&r)[0], "2026-03-05T01:00");
    let r = select_prune(
        &l,
        &KeepOptions {
            weekly: 3,
            ..Default::default()
        },
    );
    // Newest of each ISO week: the last day (Mar 11 2026 is a Wednesday) then Sundays.
    assert_eq!(
        kept(&r),
        vec!["2026-03-01T01:00", "2026-03-08T01:00", "2026-03-11T01:00"]
    );
    let r = select_prune(
        &l,
        &KeepOptions {
            monthly: 6,
            ..Default::default()
        },
    );
    assert_eq!(
        kept(&r),
        vec!["2026-01-31T01:00", "2026-02-28T01:00", "2026-03-11T01:00"]
    );
}

#[test]
fn rules_combine_without_double_counting() {
    // keep-last 1 keeps the newest; as in PBS a bucket already covered does not count, so keep-daily 2 adds two
    // more days; monthly/yearly then add nothing (their buckets are covered).
    let l = list(&[
        t(2026, 5, 1, 8, 0),
        t(2026, 5, 2, 8, 0),
        t(2026, 5, 3, 8, 0),
        t(2026, 5, 3, 9, 0),
    ]);
    let r = select_prune(
        &l,
        &KeepOptions {
            last: 1,
            daily: 2,
            ..Default::default()
        },
    );
    assert_eq!(
        kept(&r),
        vec!["2026-05-01T08:00", "2026-05-02T08:00", "2026-05-03T09:00"]
    );
    let r = select_prune(
        &l,
        &KeepOptions {
            last: 1,
            daily: 2,
            monthly: 1,
            yearly: 1,
            ..Default::default()
        },
    );
    assert_eq!(
        kept(&r),
        vec!["2026-05-01T08:00", "2026-05-02T08:00", "2026-05-03T09:00"]
    );
    assert_eq!(
        r.iter().find(|(id, _)| id == "2026-05-03T08:00").unwrap().1,
        Mark::Remove
    );
}

#[test]
fn rotation_keeps_newest_n() {
    let l = list(&[
        t(2026, 1, 3, 0, 0),
        t(2026, 1, 1, 0, 0),
        t(2026, 1, 2, 0, 0),
    ]);
    let r = select_rotation(&l, 2);
    assert_eq!(kept(&r), vec!["2026-01-02T00:00", "2026-01-03T00:00"]);
    assert_eq!(kept(&select_rotation(&l, 0)).len(), 0);
    assert_eq!(kept(&select_rotation(&l, 10)).len(), 3);
}
