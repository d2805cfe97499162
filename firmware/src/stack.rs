//! Stack high-water mark: cortex-m-rt's `paint-stack` fills the stack with a pattern at
//! reset; the deepest word no longer holding it is how far the stack grew.

/// The fill pattern of cortex-m-rt's `paint-stack`.
const PAINT: u32 = 0xCCCC_CCCC;

extern "C" {
    /// Top of the stack (initial SP), from cortex-m-rt's link.x.
    static _stack_start: u32;
    /// Lowest address the stack may reach (end of .bss/.uninit).
    static _stack_end: u32;
}

fn bounds() -> (usize, usize) {
    // Only the symbols' addresses are taken, never their values.
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let bottom = core::ptr::addr_of!(_stack_end) as usize;
    (bottom, top)
}

/// Bytes between the lowest and highest stack addresses.
pub fn size() -> usize {
    let (bottom, top) = bounds();
    top - bottom
}

/// Most bytes of stack used since reset.
pub fn high_water() -> usize {
    used_below(bounds().1)
}

/// Repaints the free stack below the caller (from the lowest stack address up to just
/// below this function's frame) and returns the caller's stack pointer, so that
/// [`used_below`] afterwards tells how deep the calls made in between went: the stack
/// an inference needs, apart from the harness's printing. Interrupts are masked while
/// painting, since a handler would push its frame into the region being painted.
#[inline(never)]
pub fn paint_below_caller() -> usize {
    cortex_m::interrupt::free(|_| {
        let sp = cortex_m::register::msp::read() as usize;
        let (bottom, _) = bounds();
        // This closure's frame is above `sp`; everything below it is free.
        let mut addr = bottom;
        while addr + 4 <= sp {
            // SAFETY: `addr` is word-aligned and between the stack's lowest address and
            // the current stack pointer: free stack no live frame occupies (interrupts
            // are masked, so no handler can push one meanwhile).
            unsafe { core::ptr::write_volatile(addr as *mut u32, PAINT) };
            addr += 4;
        }
        sp
    })
}

/// Bytes of stack used below `sp` (from [`paint_below_caller`], or the top of the stack
/// for everything since reset): the distance from `sp` down to the deepest word that no
/// longer holds the paint pattern.
pub fn used_below(sp: usize) -> usize {
    let (bottom, _) = bounds();
    let mut addr = bottom;
    while addr < sp {
        // SAFETY: `addr` is word-aligned (link.x asserts both bounds are) and inside the
        // stack region, which is RAM this program owns; a volatile read of it has no side
        // effects. Words below the current SP are not live data, only the paint pattern
        // or what deeper calls left behind, which is exactly what is being inspected.
        let word = unsafe { core::ptr::read_volatile(addr as *const u32) };
        if word != PAINT {
            break;
        }
        addr += 4;
    }
    sp - addr
}
