//! The throttle's bookkeeping, with the clock passed in.

use super::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

#[test]
fn five_failures_in_the_window_start_a_cool_down() {
    let t = AuthThrottle::default();
    let t0 = Instant::now();
    for i in 0..4 {
        assert_eq!(t.failure(IP, t0 + secs(i)), None);
        assert_eq!(t.check(IP, t0 + secs(i)), Ok(()));
    }
    assert_eq!(t.failure(IP, t0 + secs(4)), Some(secs(30)));
    assert_eq!(t.check(IP, t0 + secs(14)), Err(secs(20)));
    assert_eq!(t.check(IP, t0 + secs(34)), Ok(()));
    // Another address is not affected.
    assert_eq!(t.check("192.0.2.8".parse().unwrap(), t0 + secs(5)), Ok(()));
}

#[test]
fn failures_outside_the_window_do_not_count() {
    let t = AuthThrottle::default();
    let t0 = Instant::now();
    for i in 0..20 {
        assert_eq!(t.failure(IP, t0 + secs(20 * i)), None, "failure {i}");
    }
}

#[test]
fn repeated_cool_downs_double_up_to_the_cap_and_success_resets() {
    let t = AuthThrottle::default();
    let mut now = Instant::now();
    let mut seen = Vec::new();
    for _ in 0..7 {
        let mut started = None;
        for _ in 0..5 {
            started = t.failure(IP, now);
        }
        let cooldown = started.unwrap();
        seen.push(cooldown.as_secs());
        now += cooldown;
        assert_eq!(t.check(IP, now), Ok(()));
    }
    assert_eq!(seen, [30, 60, 120, 240, 480, 900, 900]);
    t.success(IP);
    assert_eq!(t.tracked(), 0);
    for _ in 0..4 {
        t.failure(IP, now);
    }
    assert_eq!(t.failure(IP, now), Some(secs(30)));
}

#[test]
fn a_long_quiet_time_forgives_earlier_cool_downs() {
    let t = AuthThrottle::default();
    let t0 = Instant::now();
    for _ in 0..5 {
        t.failure(IP, t0);
    }
    let later = t0 + secs(30) + secs(15 * 60);
    for _ in 0..4 {
        t.failure(IP, later);
    }
    assert_eq!(t.failure(IP, later), Some(secs(30)));
}

#[test]
fn failures_while_cooling_down_are_not_counted_again() {
    let t = AuthThrottle::default();
    let t0 = Instant::now();
    for _ in 0..5 {
        t.failure(IP, t0);
    }
    assert_eq!(t.failure(IP, t0 + secs(1)), None);
    assert_eq!(t.check(IP, t0 + secs(1)), Err(secs(29)));
}

#[test]
fn ipv6_is_throttled_per_64_and_mapped_v4_as_v4() {
    let t = AuthThrottle::default();
    let t0 = Instant::now();
    for i in 1..=5u16 {
        t.failure(format!("2001:db8::{i:x}").parse().unwrap(), t0);
    }
    assert!(t.check("2001:db8::ffff:1".parse().unwrap(), t0).is_err());
    assert!(t.check("2001:db8:0:1::1".parse().unwrap(), t0).is_ok());
    for _ in 0..5 {
        t.failure("::ffff:192.0.2.7".parse().unwrap(), t0);
    }
    assert!(t.check(IP, t0).is_err());
}

#[test]
fn attempts_in_flight_count_so_concurrent_guesses_cannot_all_get_in() {
    let t = AuthThrottle::default();
    let t0 = Instant::now();
    let attempts: Vec<_> = (0..48).map(|_| t.begin(IP, t0)).collect();
    let (started, refused): (Vec<_>, Vec<_>) = attempts.into_iter().partition(Result::is_ok);
    assert_eq!((started.len(), refused.len()), (5, 43));
    let mut cooldowns = started.into_iter().map(|a| a.unwrap().failed(t0));
    assert!(cooldowns.by_ref().take(4).all(|c| c.is_none()));
    assert_eq!(cooldowns.next(), Some(Some(secs(30))));
    assert_eq!(
        t.begin(IP, t0 + secs(1)).unwrap_err(),
        Refused::CoolingDown(secs(29))
    );
    // Another address still gets in.
    assert!(t.begin("192.0.2.8".parse().unwrap(), t0).is_ok());
}

#[test]
fn an_attempt_dropped_without_an_outcome_is_a_failure_and_success_clears() {
    let t = AuthThrottle::default();
    let t0 = Instant::now();
    for _ in 0..4 {
        drop(t.begin(IP, t0).unwrap());
    }
    let last = t.begin(IP, t0).unwrap();
    assert!(t.begin(IP, t0).is_err(), "4 failures + 1 in flight");
    last.succeeded();
    assert_eq!(t.tracked(), 0);
    for _ in 0..5 {
        let _ = t.begin(IP, t0).unwrap();
    }
    assert!(t.check(IP, t0).is_err());
}

#[test]
fn memory_is_bounded() {
    let t = AuthThrottle::new(ThrottleConfig {
        max_tracked: 3,
        ..ThrottleConfig::default()
    });
    let t0 = Instant::now();
    for i in 0..10u8 {
        t.failure(IpAddr::from([10, 0, 0, i]), t0 + secs(u64::from(i)));
    }
    assert_eq!(t.tracked(), 3);
}
