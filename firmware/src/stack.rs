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
    let (bottom, top) = bounds();
    let mut addr = bottom;
    while addr < top {
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
    top - addr
}
