//! The state word: state, half-open probe counts and generation in one `AtomicU64`.

use crate::observe::State;

// State word: state (3 bits) | admitted probes (10) | successful probes (10) | generation (41).
pub(super) const STATE_MASK: u64 = 0b111;
const COUNT_MASK: u64 = 0x3ff;
const ADMITTED_SHIFT: u32 = 3;
const SUCCESS_SHIFT: u32 = 13;
const GEN_SHIFT: u32 = 23;
pub(super) const ADMITTED_ONE: u64 = 1 << ADMITTED_SHIFT;
pub(super) const SUCCESS_ONE: u64 = 1 << SUCCESS_SHIFT;

pub(super) const CLOSED: u64 = State::Closed.to_bits();
pub(super) const OPEN: u64 = State::Open.to_bits();
pub(super) const HALF_OPEN: u64 = State::HalfOpen.to_bits();
pub(super) const FORCED_OPEN: u64 = State::ForcedOpen.to_bits();
pub(super) const DISABLED: u64 = State::Disabled.to_bits();

#[inline]
pub(super) fn state_of(w: u64) -> u64 {
    w & STATE_MASK
}
#[inline]
pub(super) fn gen_of(w: u64) -> u64 {
    w >> GEN_SHIFT
}
#[inline]
pub(super) fn admitted_of(w: u64) -> u64 {
    (w >> ADMITTED_SHIFT) & COUNT_MASK
}
#[inline]
pub(super) fn successes_of(w: u64) -> u64 {
    (w >> SUCCESS_SHIFT) & COUNT_MASK
}
#[inline]
pub(super) fn pack(state: u64, admitted: u64, generation: u64) -> u64 {
    state | (admitted << ADMITTED_SHIFT) | (generation << GEN_SHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_bleed_into_each_other() {
        let generation = (1u64 << 41) - 1;
        let w = pack(HALF_OPEN, 1000, generation) + SUCCESS_ONE * 999;
        assert_eq!(state_of(w), HALF_OPEN);
        assert_eq!(admitted_of(w), 1000);
        assert_eq!(successes_of(w), 999);
        assert_eq!(gen_of(w), generation);
        assert_eq!(admitted_of(w - ADMITTED_ONE), 999);
        assert_eq!(
            State::from_bits(state_of(pack(DISABLED, 0, 7))),
            State::Disabled
        );
    }
}
