//! TFLite's SAME/VALID padding, turned into the explicit top/left padding `.ekd`
//! stores (TFLite `ComputeOutSize` and `ComputePaddingWithOffset`, kernels/padding.h).
//!
//! TFLite puts the smaller half of an odd total padding at the top/left; the runtime
//! derives bottom/right padding from the output shape, so top/left is all we keep.

/// TFLite padding mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Output size `ceil(in / stride)`, zero padding split top/left-smaller.
    Same,
    /// No padding.
    Valid,
}

/// Output size along one axis (TFLite `ComputeOutSize`); `None` if it is not positive.
pub fn out_size(mode: Mode, input: i64, filter: i64, stride: i64, dilation: i64) -> Option<i64> {
    if stride <= 0 || dilation <= 0 || filter <= 0 || input <= 0 {
        return None;
    }
    let effective = (filter - 1) * dilation + 1;
    let out = match mode {
        Mode::Same => (input + stride - 1) / stride,
        Mode::Valid => (input + stride - effective) / stride,
    };
    (out > 0).then_some(out)
}

/// Top (or left) padding for an axis with the given output size (TFLite
/// `ComputePaddingWithOffset`, whose offset is the extra bottom/right cell).
pub fn leading_pad(input: i64, filter: i64, stride: i64, dilation: i64, output: i64) -> i64 {
    let effective = (filter - 1) * dilation + 1;
    let total = ((output - 1) * stride + effective - input).max(0);
    total / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_splits_smaller_half_first() {
        // 6 -> 3 with k3 s2: total 1, all of it at the bottom.
        assert_eq!(out_size(Mode::Same, 6, 3, 2, 1), Some(3));
        assert_eq!(leading_pad(6, 3, 2, 1, 3), 0);
        // 5 -> 3 with k3 s2: total 2, one on each side.
        assert_eq!(out_size(Mode::Same, 5, 3, 2, 1), Some(3));
        assert_eq!(leading_pad(5, 3, 2, 1, 3), 1);
        // k3 s1 keeps the size with one cell each side.
        assert_eq!(leading_pad(12, 3, 1, 1, 12), 1);
        // Dilation 2 makes a k3 window span 5 cells.
        assert_eq!(leading_pad(10, 3, 1, 2, 10), 2);
        // k2 s1: total 1, bottom only.
        assert_eq!(leading_pad(3, 2, 1, 1, 3), 0);
    }

    #[test]
    fn valid_padding_is_zero() {
        assert_eq!(out_size(Mode::Valid, 40, 5, 2, 1), Some(18));
        assert_eq!(out_size(Mode::Valid, 18, 3, 2, 1), Some(8));
        assert_eq!(leading_pad(40, 5, 2, 1, 18), 0);
        assert_eq!(out_size(Mode::Valid, 2, 3, 1, 1), None);
        assert_eq!(out_size(Mode::Same, 2, 3, 0, 1), None);
    }
}
