//! Fuzz input as a stream of operations and their arguments. Running out
//! of input is never an error: every read has a default.

use std::time::Duration;

/// A cursor over the fuzz input.
#[derive(Debug, Clone)]
pub struct Ops<'a> {
    data: &'a [u8],
    repeats_left: usize,
}

impl<'a> Ops<'a> {
    /// Reads `data` from the start; all [`Ops::repeat`]s together grant at
    /// most `repeat_budget` repetitions. A target picks a budget that can
    /// push past its heap budget (255 octets a repetition) and still runs
    /// an input in well under a second.
    pub fn new(data: &'a [u8], repeat_budget: usize) -> Self {
        Ops {
            data,
            repeats_left: repeat_budget,
        }
    }

    /// Whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0 past the end.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next byte, if any.
    pub fn next_byte(&mut self) -> Option<u8> {
        (!self.data.is_empty()).then(|| self.byte())
    }

    /// Up to `n` next bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A length byte, then that many bytes (fewer at the end of input).
    pub fn piece(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte());
        self.bytes(n)
    }

    /// A repeat count from one byte: 1 to 1009, skewed small, so that a few
    /// bytes of input can push megabytes through a session and show
    /// unbounded buffering; at least 1, and within what is left of the
    /// input's repeat budget.
    pub fn repeat(&mut self) -> usize {
        let b = usize::from(self.byte());
        let wanted = if b < 192 {
            1 + b % 8
        } else {
            1 + (b - 192) * 16
        };
        let granted = wanted.min(self.repeats_left).max(1);
        self.repeats_left = self.repeats_left.saturating_sub(granted);
        granted
    }

    /// A step of the clock, around the RFC 5321 timeouts (and the TLS
    /// handshake timeout) on either side.
    pub fn duration(&mut self) -> Duration {
        const STEPS: [u64; 12] = [0, 1, 2, 30, 59, 61, 119, 121, 179, 181, 299, 301];
        let b = self.byte();
        let secs = STEPS[usize::from(b) % STEPS.len()];
        if b >= 128 {
            Duration::from_secs(secs * 2 + 1)
        } else {
            Duration::from_secs(secs)
        }
    }
}
