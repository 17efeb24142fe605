//! The restart policy as a state machine: `no`, `on-failure`, `always`,
//! exponential backoff, giving up after `max_restarts`.

use bottle_shared::message::{RestartMode, RestartPolicy};

/// What to do after the agent exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after `delay_ms`; `attempt` is the next start number.
    Restart {
        /// Start number of the next start (the first start is 0).
        attempt: u32,
        /// Backoff before it.
        delay_ms: u64,
    },
    /// Stop supervising and finish with `code`.
    Stop {
        /// The code to finish with.
        code: i32,
        /// True when the policy wanted a restart but `max_restarts` was used up.
        gave_up: bool,
    },
}

/// Restart bookkeeping for one supervised process.
#[derive(Clone, Debug)]
pub struct RestartState {
    policy: RestartPolicy,
    restarts: u32,
}

impl RestartState {
    /// Fresh state for `policy`.
    pub fn new(policy: RestartPolicy) -> Self {
        RestartState {
            policy,
            restarts: 0,
        }
    }

    /// Restarts done so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The backoff before restart number `n` (from 0): initial × 2ⁿ, capped.
    pub fn backoff_ms(&self, n: u32) -> u64 {
        let factor = 1u64.checked_shl(n.min(63)).unwrap_or(u64::MAX);
        self.policy
            .backoff_initial_ms
            .saturating_mul(factor)
            .min(self.policy.backoff_max_ms)
    }

    /// The agent exited with `code`; decide, and count the restart.
    pub fn on_exit(&mut self, code: i32) -> Decision {
        let wants = match self.policy.mode {
            RestartMode::Always => true,
            RestartMode::OnFailure => code != 0,
            _ => false,
        };
        if !wants {
            return Decision::Stop {
                code,
                gave_up: false,
            };
        }
        if self.restarts >= self.policy.max_restarts {
            return Decision::Stop {
                code,
                gave_up: true,
            };
        }
        let delay_ms = self.backoff_ms(self.restarts);
        self.restarts += 1;
        Decision::Restart {
            attempt: self.restarts,
            delay_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: RestartMode, max: u32) -> RestartPolicy {
        RestartPolicy {
            mode,
            max_restarts: max,
            backoff_initial_ms: 100,
            backoff_max_ms: 350,
        }
    }

    fn restart(attempt: u32, delay_ms: u64) -> Decision {
        Decision::Restart { attempt, delay_ms }
    }

    fn stop(code: i32, gave_up: bool) -> Decision {
        Decision::Stop { code, gave_up }
    }

    #[test]
    fn decisions_follow_the_mode_and_the_budget() {
        use RestartMode::*;
        // (mode, max_restarts, exit codes in order, expected decisions)
        let table: Vec<(RestartMode, u32, Vec<i32>, Vec<Decision>)> = vec![
            (No, 5, vec![1], vec![stop(1, false)]),
            (No, 5, vec![0], vec![stop(0, false)]),
            (OnFailure, 5, vec![0], vec![stop(0, false)]),
            (
                OnFailure,
                5,
                vec![1, 137, 0],
                vec![restart(1, 100), restart(2, 200), stop(0, false)],
            ),
            (
                OnFailure,
                2,
                vec![3, 3, 3],
                vec![restart(1, 100), restart(2, 200), stop(3, true)],
            ),
            (
                Always,
                4,
                vec![0, 0, 1, 0, 0],
                vec![
                    restart(1, 100),
                    restart(2, 200),
                    restart(3, 350),
                    restart(4, 350),
                    stop(0, true),
                ],
            ),
            (Always, 0, vec![0], vec![stop(0, true)]),
        ];
        for (mode, max, codes, want) in table {
            let mut s = RestartState::new(policy(mode, max));
            let got: Vec<_> = codes.iter().map(|c| s.on_exit(*c)).collect();
            assert_eq!(got, want, "{mode:?} max {max} codes {codes:?}");
        }
    }

    #[test]
    fn backoff_doubles_then_caps_without_overflow() {
        let s = RestartState::new(RestartPolicy {
            mode: RestartMode::Always,
            max_restarts: u32::MAX,
            backoff_initial_ms: 250,
            backoff_max_ms: 30_000,
        });
        let got: Vec<u64> = [0, 1, 2, 3, 6, 7, 64, 200]
            .map(|n| s.backoff_ms(n))
            .to_vec();
        assert_eq!(got, [250, 500, 1000, 2000, 16_000, 30_000, 30_000, 30_000]);
    }
}
