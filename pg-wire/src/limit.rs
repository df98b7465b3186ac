//! How much one answer may bring: [`AnswerLimit`], chosen per call by the caller (each use of
//! the protocol knows what a server can legitimately send), and the bookkeeping that charges
//! the messages of an answer against it as they arrive.

/// The most one answer may bring: rows, and bytes of the messages read whole (every message
/// but the CopyData of a COPY OUT stream, which is streamed, never held). An answer over
/// either fails with [`WireError::TooLarge`](super::WireError::TooLarge) naming the server,
/// before the message over the limit is received: memory stays within the limit whatever
/// the server sends or claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerLimit {
    /// Data rows, over all the result sets of the answer.
    pub rows: usize,
    /// Bytes of all its messages (headers included).
    pub bytes: usize,
}

impl AnswerLimit {
    /// The default, for the start-up exchange, a COPY OUT's result sets and a simple query
    /// whose caller chose none: 1,000 rows, 1 MiB.
    pub const DEFAULT: AnswerLimit = AnswerLimit {
        rows: 1_000,
        bytes: 1 << 20,
    };

    /// An answer of at most one row and 64 KiB: `IDENTIFY_SYSTEM`, `TIMELINE_STATUS`, an
    /// LSN lease, a single-row check.
    pub const ONE_ROW: AnswerLimit = AnswerLimit {
        rows: 1,
        bytes: 64 << 10,
    };
}

impl Default for AnswerLimit {
    fn default() -> Self {
        AnswerLimit::DEFAULT
    }
}

/// What the answer under way has brought so far, against its limit.
#[derive(Clone, Copy, Debug)]
pub(super) struct Budget {
    pub(super) limit: AnswerLimit,
    rows: usize,
    bytes: usize,
}

impl Budget {
    /// A fresh budget for an answer limited by `limit`.
    pub(super) fn new(limit: AnswerLimit) -> Budget {
        Budget {
            limit,
            rows: 0,
            bytes: 0,
        }
    }

    /// Charges a message of `bytes`; false (nothing charged) when it does not fit.
    pub(super) fn take_bytes(&mut self, bytes: usize) -> bool {
        match self.bytes.checked_add(bytes) {
            Some(total) if total <= self.limit.bytes => {
                self.bytes = total;
                true
            }
            _ => false,
        }
    }

    /// Charges one row; false when the answer already has all the rows it may.
    pub(super) fn take_row(&mut self) -> bool {
        if self.rows >= self.limit.rows {
            return false;
        }
        self.rows += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_takes_what_fits_and_nothing_more() {
        let mut budget = Budget::new(AnswerLimit { rows: 2, bytes: 10 });
        assert!(budget.take_bytes(6));
        assert!(!budget.take_bytes(5));
        assert!(budget.take_bytes(4));
        assert!(!budget.take_bytes(1));
        assert!(!budget.take_bytes(usize::MAX));
        assert!(budget.take_row() && budget.take_row());
        assert!(!budget.take_row());
    }
}
