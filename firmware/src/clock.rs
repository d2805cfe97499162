//! Counters that measure code: QEMU's SysTick under `-icount` (instructions) and the
//! DWT cycle counter on real silicon (cycles).
//!
//! `embedded-hal` 1.0 has no clock or timestamp trait (only `DelayNs`), so the seam is
//! this crate's own [`Clock`]; a board port implements it over whatever counter its
//! core has.

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;

/// A free-running counter.
pub trait Clock {
    /// The current raw reading, monotonic.
    fn ticks(&mut self) -> u64;
    /// Converts raw ticks elapsed over one measured region into [`Clock::unit`]s,
    /// rounded to the nearest whole unit.
    fn count(&self, ticks: u64) -> u64;
    /// What [`Clock::count`] counts: `"instructions"` or `"cycles"`.
    fn unit(&self) -> &'static str;
}

/// SysTick's 24-bit reload value: the longest period between wraps.
const RELOAD: u32 = 0x00FF_FFFF;

/// SysTick periods elapsed; only the SysTick handler writes it (load + store, so it
/// also works on ARMv6-M, which has no atomic read-modify-write).
static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.store(
        WRAPS.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// SysTick on the processor clock, read under QEMU's `-icount shift=N`: every guest
/// instruction advances virtual time by 2^N ns, so elapsed ticks convert to an exact,
/// run-to-run identical instruction count.
pub struct SysTickIcount {
    _syst: SYST,
    /// Denominator of ticks -> instructions: `hz * 2^shift` (numerator 1e9).
    hz_shifted: u64,
}

impl SysTickIcount {
    /// Starts SysTick free-running on the processor clock with its wrap interrupt on.
    pub fn start(mut syst: SYST, systick_hz: u64, icount_shift: u32) -> Self {
        syst.disable_counter();
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        SysTickIcount {
            _syst: syst,
            hz_shifted: systick_hz << icount_shift,
        }
    }
}

impl Clock for SysTickIcount {
    fn ticks(&mut self) -> u64 {
        cortex_m::interrupt::free(|_| {
            let mut wraps = WRAPS.load(Ordering::Relaxed);
            let mut current = SYST::get_current();
            // A wrap whose interrupt is still pending (masked here) is not yet in WRAPS;
            // count it and re-read, since `current` may predate the reload.
            if SCB::is_pendst_pending() {
                wraps = wraps.wrapping_add(1);
                current = SYST::get_current();
            }
            u64::from(wraps) * (u64::from(RELOAD) + 1) + u64::from(RELOAD - current)
        })
    }

    fn count(&self, ticks: u64) -> u64 {
        (ticks * 2_000_000_000 + self.hz_shifted) / (2 * self.hz_shifted)
    }

    fn unit(&self) -> &'static str {
        "instructions"
    }
}

/// The DWT cycle counter (ARMv7-M and ARMv8-M Mainline), extended to 64 bits; it must
/// be read at least once per 2^32 cycles.
#[cfg(not(armv6m))]
pub struct DwtCycles {
    last: u32,
    high: u64,
}

#[cfg(not(armv6m))]
impl DwtCycles {
    /// Enables trace and the cycle counter; `None` when the counter does not count, as
    /// in QEMU, which reports a counter that always reads 0.
    pub fn start(
        dcb: &mut cortex_m::peripheral::DCB,
        dwt: &mut cortex_m::peripheral::DWT,
    ) -> Option<Self> {
        if !cortex_m::peripheral::DWT::has_cycle_counter() {
            return None;
        }
        dcb.enable_trace();
        dwt.enable_cycle_counter();
        let before = cortex_m::peripheral::DWT::cycle_count();
        cortex_m::asm::delay(64);
        let after = cortex_m::peripheral::DWT::cycle_count();
        (after != before).then_some(DwtCycles {
            last: after,
            high: 0,
        })
    }
}

#[cfg(not(armv6m))]
impl Clock for DwtCycles {
    fn ticks(&mut self) -> u64 {
        let now = cortex_m::peripheral::DWT::cycle_count();
        if now < self.last {
            self.high += 1 << 32;
        }
        self.last = now;
        self.high | u64::from(now)
    }

    fn count(&self, ticks: u64) -> u64 {
        ticks
    }

    fn unit(&self) -> &'static str {
        "cycles"
    }
}

/// The counter this firmware found at boot: cycles where the core counts them, else
/// instructions from SysTick under QEMU's `-icount`.
pub enum BoardClock {
    /// QEMU (or a core without DWT).
    Icount(SysTickIcount),
    /// Real silicon with a DWT cycle counter.
    #[cfg(not(armv6m))]
    Cycles(DwtCycles),
}

impl Clock for BoardClock {
    // Never inlined, so every reading costs the same instructions and the overhead
    // measured once applies to every region.
    #[inline(never)]
    fn ticks(&mut self) -> u64 {
        match self {
            BoardClock::Icount(c) => c.ticks(),
            #[cfg(not(armv6m))]
            BoardClock::Cycles(c) => c.ticks(),
        }
    }

    fn count(&self, ticks: u64) -> u64 {
        match self {
            BoardClock::Icount(c) => c.count(ticks),
            #[cfg(not(armv6m))]
            BoardClock::Cycles(c) => c.count(ticks),
        }
    }

    fn unit(&self) -> &'static str {
        match self {
            BoardClock::Icount(c) => c.unit(),
            #[cfg(not(armv6m))]
            BoardClock::Cycles(c) => c.unit(),
        }
    }
}

/// Runs exactly 100 instructions, to check a clock's instruction count.
#[inline(always)]
pub fn hundred_instructions() {
    // Spelled out rather than `.rept`: LLVM sizes inline asm by its lines, and an
    // underestimate puts Thumb-1 literal pools out of reach (microbit build).
    macro_rules! ten {
        () => {
            "nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n"
        };
    }
    // SAFETY: only `nop`s: no memory, stack or flag effects.
    unsafe {
        core::arch::asm!(
            concat!(
                ten!(),
                ten!(),
                ten!(),
                ten!(),
                ten!(),
                ten!(),
                ten!(),
                ten!(),
                ten!(),
                ten!()
            ),
            options(nomem, nostack, preserves_flags)
        );
    }
}
