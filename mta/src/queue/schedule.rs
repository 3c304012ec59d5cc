//! The retry schedule: how long a delivery waits after each failure, how
//! many retries it gets, and when its message expires.

use std::time::{Duration, SystemTime};

use crate::config::policy::{MaxRetries, OutboundPolicy};

/// What the queue needs of an [`OutboundPolicy`]: copied out of it so that
/// tests, and the queue's own bookkeeping, need no configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// `Retry_Interval`: the wait after the first failure.
    pub retry_interval: Duration,
    /// `Max_Retry_Interval`: the longest wait between two attempts.
    pub max_retry_interval: Duration,
    /// `Max_Retries`.
    pub max_retries: MaxRetries,
    /// `Message_Expiration`, counted from the message's arrival.
    pub message_expiration: Duration,
    /// `Max_Outbound_Connections`: attempts in flight at once per
    /// (binding, domain).
    pub max_outbound_connections: usize,
    /// `Max_Deliveries_Per_Connection`: messages one attempt carries;
    /// `None`: no limit.
    pub max_deliveries_per_connection: Option<usize>,
    /// `Generate_Bounces`.
    pub generate_bounces: bool,
    /// `Suspend_Delivery`: no attempt is made; the deliveries wait, and
    /// still expire.
    pub suspended: bool,
}

/// The shortest wait between two attempts, whatever `Retry_Interval` says:
/// a zero interval would otherwise retry as fast as connections fail, until
/// the message expires.
pub const MIN_RETRY_INTERVAL: Duration = Duration::from_secs(1);

impl Default for Schedule {
    /// Momentum's defaults, which are also Petrel's.
    fn default() -> Self {
        Schedule {
            retry_interval: Duration::from_secs(1200),
            max_retry_interval: Duration::from_secs(43200),
            max_retries: MaxRetries::Auto,
            message_expiration: Duration::from_secs(86400),
            max_outbound_connections: 32,
            max_deliveries_per_connection: None,
            generate_bounces: true,
            suspended: false,
        }
    }
}

impl From<&OutboundPolicy> for Schedule {
    fn from(policy: &OutboundPolicy) -> Self {
        Schedule {
            retry_interval: policy.retry_interval,
            max_retry_interval: policy.max_retry_interval,
            max_retries: policy.max_retries,
            message_expiration: policy.message_expiration,
            max_outbound_connections: policy.max_outbound_connections,
            max_deliveries_per_connection: policy.max_deliveries_per_connection,
            generate_bounces: policy.generate_bounces,
            suspended: policy.suspend_delivery,
        }
    }
}

impl Schedule {
    /// The wait after the `failures`-th failed attempt (1 for the first):
    /// `Retry_Interval × 2^(failures − 1)`, at most `Max_Retry_Interval`,
    /// at least [`MIN_RETRY_INTERVAL`].
    pub fn retry_delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1);
        // Past 2^31 any interval of a second or more is beyond every cap
        // that can be configured: saturate rather than overflow.
        let delay = 1u32
            .checked_shl(doublings)
            .and_then(|factor| self.base_interval().checked_mul(factor))
            .unwrap_or(Duration::MAX);
        delay.min(self.max_retry_interval).max(MIN_RETRY_INTERVAL)
    }

    /// How many retries (attempts after the first) a delivery gets before
    /// its recipients fail as expired; `None`: no limit but
    /// `Message_Expiration`.
    ///
    /// `auto` is Momentum's default, which "calculates the maximum number
    /// of retries based on the message's message_expiration" without saying
    /// how. Momentum's documentation warns that `auto` must be changed when
    /// `Max_Retry_Interval` is used, so its count cannot take the cap into
    /// account: it is the number of retries the uncapped doubling schedule
    /// fits into the expiration, the largest `n` with
    /// `Retry_Interval × (2^n − 1) ≤ Message_Expiration`, that is
    /// `⌊log2(Message_Expiration / Retry_Interval + 1)⌋` (6 for the
    /// defaults 1200 s and 86400 s). With the defaults the capped schedule
    /// fits the same 6; with a low cap, `auto` gives up long before
    /// `Message_Expiration`, as in Momentum (QUEUE.md says so).
    pub fn retry_limit(&self) -> Option<u32> {
        match self.max_retries {
            MaxRetries::Count(n) => Some(n),
            MaxRetries::Unlimited => None,
            MaxRetries::Auto => Some(auto_retries(self.base_interval(), self.message_expiration)),
        }
    }

    /// When a message received at `received_at` expires; `None`: beyond
    /// what `SystemTime` can say, that is never.
    pub fn expires_at(&self, received_at: SystemTime) -> Option<SystemTime> {
        received_at.checked_add(self.message_expiration)
    }

    /// Attempts in flight at once per (binding, domain): at least one, or
    /// nothing would ever leave.
    pub fn connections(&self) -> usize {
        self.max_outbound_connections.max(1)
    }

    fn base_interval(&self) -> Duration {
        self.retry_interval.max(MIN_RETRY_INTERVAL)
    }
}

/// The largest `n` with `interval × (2^n − 1) ≤ expiration`.
fn auto_retries(interval: Duration, expiration: Duration) -> u32 {
    let interval = interval.as_nanos().max(1);
    let expiration = expiration.as_nanos();
    let mut elapsed: u128 = 0;
    let mut step = interval;
    let mut n = 0;
    // A Duration is below 2^94 ns, so this ends within 94 rounds.
    while n < 128 {
        match elapsed.checked_add(step) {
            Some(next) if next <= expiration => {
                elapsed = next;
                n += 1;
                step = step.saturating_mul(2);
            }
            _ => break,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn doubling_capped() {
        let s = Schedule {
            max_retry_interval: secs(9600),
            ..Schedule::default()
        };
        let delays: Vec<u64> = (1..=7).map(|n| s.retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [1200, 2400, 4800, 9600, 9600, 9600, 9600]);
        assert_eq!(s.retry_delay(0).as_secs(), 1200);
        assert_eq!(s.retry_delay(u32::MAX).as_secs(), 9600);
        let uncapped = Schedule {
            max_retry_interval: Duration::MAX,
            ..Schedule::default()
        };
        assert_eq!(uncapped.retry_delay(u32::MAX), Duration::MAX);
        assert_eq!(uncapped.retry_delay(32), secs(1200) * (1 << 31));
        assert_eq!(uncapped.retry_delay(33), Duration::MAX);
    }

    #[test]
    fn zero_interval_is_floored() {
        let s = Schedule {
            retry_interval: Duration::ZERO,
            ..Schedule::default()
        };
        assert_eq!(s.retry_delay(1), MIN_RETRY_INTERVAL);
        assert_eq!(s.retry_delay(3), secs(4));
        let capped_below = Schedule {
            max_retry_interval: Duration::ZERO,
            ..Schedule::default()
        };
        assert_eq!(capped_below.retry_delay(5), MIN_RETRY_INTERVAL);
    }

    #[test]
    fn auto_fits_the_doubling_schedule_into_the_expiration() {
        let defaults = Schedule::default();
        // 1200 + 2400 + 4800 + 9600 + 19200 + 38400 = 75600 ≤ 86400 <
        // 75600 + 76800.
        assert_eq!(defaults.retry_limit(), Some(6));
        let cases = [
            (1200, 1199, 0),
            (1200, 1200, 1),
            (1200, 3599, 1),
            (1200, 3600, 2),
            (1200, 259_200, 7),
            (1, 0, 0),
            (60, 3600, 5),
        ];
        for (interval, expiration, n) in cases {
            let s = Schedule {
                retry_interval: secs(interval),
                message_expiration: secs(expiration),
                ..Schedule::default()
            };
            assert_eq!(s.retry_limit(), Some(n), "{interval} {expiration}");
        }
        // The cap does not enter into it (Momentum's warning).
        let capped = Schedule {
            max_retry_interval: secs(1200),
            ..Schedule::default()
        };
        assert_eq!(capped.retry_limit(), Some(6));
        let huge = Schedule {
            retry_interval: Duration::ZERO,
            message_expiration: Duration::MAX,
            ..Schedule::default()
        };
        assert_eq!(huge.retry_limit(), Some(64));
    }

    #[test]
    fn explicit_and_unlimited() {
        let five = Schedule {
            max_retries: MaxRetries::Count(5),
            ..Schedule::default()
        };
        assert_eq!(five.retry_limit(), Some(5));
        let none = Schedule {
            max_retries: MaxRetries::Unlimited,
            ..Schedule::default()
        };
        assert_eq!(none.retry_limit(), None);
    }

    #[test]
    fn limits_are_at_least_one() {
        let s = Schedule {
            max_outbound_connections: 0,
            ..Schedule::default()
        };
        assert_eq!(s.connections(), 1);
        assert_eq!(
            Schedule::default().expires_at(SystemTime::UNIX_EPOCH),
            Some(SystemTime::UNIX_EPOCH + secs(86400))
        );
    }
}
