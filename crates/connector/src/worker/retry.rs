//! [`RetryPolicy`]: when a failed job is tried again, with backoff and jitter, and when it is
//! given up.

use std::time::Duration;

/// When failed jobs are tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The wait before each retry: the first entry after the first failure, and so on. A job
    /// that fails once more than there are entries is dead-lettered.
    pub schedule: Vec<Duration>,
    /// Each wait is randomly stretched or shrunk by up to this fraction (0.2: ±20 %), so jobs
    /// that failed together do not all come back together.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h, 8 h: about a day in all, ±20 %.
    fn default() -> Self {
        RetryPolicy {
            schedule: [5, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800, 28_800]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt of a job whose attempt number `attempt` (1-based) just
    /// failed, or `None` to give up. A peer's `Retry-After` is honoured when longer.
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        seed: u64,
    ) -> Option<Duration> {
        let index = usize::try_from(attempt.saturating_sub(1)).ok()?;
        let base = *self.schedule.get(index)?;
        let unit = (splitmix(seed) >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let factor = 1.0 + self.jitter.clamp(0.0, 1.0) * (2.0 * unit - 1.0);
        let jittered = base.mul_f64(factor.max(0.0));
        Some(retry_after.map_or(jittered, |hint| hint.max(jittered)))
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_lasts_about_a_day_then_gives_up() {
        let policy = RetryPolicy::default();
        let total: Duration = policy.schedule.iter().sum();
        assert!(
            total > Duration::from_secs(20 * 3600) && total < Duration::from_secs(28 * 3600),
            "{total:?}"
        );
        assert_eq!(
            policy.delay(11, None, 1),
            None,
            "dead-lettered after the schedule"
        );
    }

    #[test]
    fn delays_follow_the_schedule_within_the_jitter() {
        let policy = RetryPolicy::default();
        for seed in 0..200 {
            let d = policy.delay(1, None, seed).expect("retry");
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(6),
                "{d:?}"
            );
            let d = policy.delay(4, None, seed).expect("retry");
            assert!(
                d >= Duration::from_secs(480) && d <= Duration::from_secs(720),
                "{d:?}"
            );
        }
        let spread: std::collections::HashSet<_> = (0..50)
            .map(|s| policy.delay(3, None, s).expect("retry").as_millis())
            .collect();
        assert!(spread.len() > 40, "jitter spreads retries");
    }

    #[test]
    fn retry_after_is_honoured_when_longer() {
        let policy = RetryPolicy {
            schedule: vec![Duration::from_secs(5)],
            jitter: 0.0,
        };
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(90)), 0),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(1)), 0),
            Some(Duration::from_secs(5))
        );
    }
}
