//! edgekd firmware: runs the `.ekd` model embedded at build time on its golden inputs,
//! prints outputs and instruction (or cycle) counts through semihosting, and exits with
//! status 0 only if every output equals the expected one.
//!
//! The board, its memory map and its QEMU settings come from a cargo feature (see
//! `build.rs` and `boards/`); the model from `EDGEKD_MODEL`.
#![no_std]
#![no_main]
// The self-test build skips the model run, leaving its harness unused.
#![cfg_attr(feature = "selftest", allow(dead_code, unused_imports))]

mod app;
mod clock;
mod out;
#[cfg(feature = "selftest")]
mod selftest;
mod stack;

/// Board constants, the model and its golden vectors, written by `build.rs`.
mod generated {
    /// Aligns its contents to 16 bytes: the model parser reads tensors in place.
    #[repr(C, align(16))]
    pub struct Aligned16<T>(pub T);

    include!(concat!(env!("OUT_DIR"), "/generated.rs"));
}

use cortex_m_rt::entry;
use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
use embedded_io::Write;

/// The arena's storage, aligned for word-wide kernel loads.
#[repr(C, align(16))]
struct Arena([u8; generated::ARENA_SIZE]);

#[entry]
fn main() -> ! {
    // cortex-m-rt turns this into a `&'static mut` in .bss: the arena is static, sized by
    // build.rs from the model, and the linker checks it against the board's RAM.
    static mut ARENA: Arena = Arena([0; generated::ARENA_SIZE]);

    let verdict = run(&mut ARENA.0);
    debug::exit(if verdict == Some(app::Verdict::Pass) {
        EXIT_SUCCESS
    } else {
        EXIT_FAILURE
    });
    // Only reached when no host answered the semihosting exit call.
    loop {
        cortex_m::asm::wfi();
    }
}

fn run(arena: &mut [u8]) -> Option<app::Verdict> {
    let mut out = out::Semihosting::stdout().ok()?;
    let Some(core) = cortex_m::Peripherals::take() else {
        let _ = writeln!(
            out,
            "error stage=boot reason=\"core peripherals already taken\""
        );
        return None;
    };
    measure(&mut out, core, arena)
}

#[cfg(not(feature = "selftest"))]
fn measure(
    out: &mut out::Semihosting,
    core: cortex_m::Peripherals,
    arena: &mut [u8],
) -> Option<app::Verdict> {
    let mut clock = board_clock(core);
    let verdict = app::run(out, &mut clock, &mut out::NoPin, arena).ok()?;
    let _ = writeln!(
        out,
        "stack used={} size={}",
        stack::high_water(),
        stack::size()
    );
    Some(verdict)
}

/// The self-test build checks the kernels instead of running the model.
#[cfg(feature = "selftest")]
fn measure(
    out: &mut out::Semihosting,
    _: cortex_m::Peripherals,
    _: &mut [u8],
) -> Option<app::Verdict> {
    Some(selftest::run(out))
}

/// Cycles from the DWT where the core counts them, else SysTick instructions (QEMU).
#[cfg(not(armv6m))]
fn board_clock(mut core: cortex_m::Peripherals) -> clock::BoardClock {
    match clock::DwtCycles::start(&mut core.DCB, &mut core.DWT) {
        Some(cycles) => clock::BoardClock::Cycles(cycles),
        None => icount_clock(core.SYST),
    }
}

/// ARMv6-M has no DWT cycle counter.
#[cfg(armv6m)]
fn board_clock(core: cortex_m::Peripherals) -> clock::BoardClock {
    icount_clock(core.SYST)
}

fn icount_clock(syst: cortex_m::peripheral::SYST) -> clock::BoardClock {
    clock::BoardClock::Icount(clock::SysTickIcount::start(
        syst,
        generated::SYSTICK_HZ,
        generated::ICOUNT_SHIFT,
    ))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if let Ok(mut out) = out::Semihosting::stdout() {
        let _ = writeln!(out, "error stage=panic reason=\"{info}\"");
    }
    debug::exit(EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
