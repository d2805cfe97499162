//! Tensor records: dtype, shape, storage (arena or constant) and quantization.

use super::bytes::{f32_slice, i32_slice};
use super::TENSOR_RECORD_LEN;
use crate::Error;
use core::ops::Range;
use edgekd_kernels::Shape;

/// Highest tensor rank the format stores.
pub const MAX_RANK: usize = 4;

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DType {
    /// Signed 8-bit (activations and weights).
    I8,
    /// Signed 32-bit (biases).
    I32,
}

impl DType {
    /// Code stored in the file.
    pub const fn code(self) -> u8 {
        match self {
            DType::I8 => 1,
            DType::I32 => 2,
        }
    }

    fn from_code(code: u8) -> Result<Self, Error> {
        match code {
            1 => Ok(DType::I8),
            2 => Ok(DType::I32),
            _ => Err(Error::InvalidValue),
        }
    }

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I32 => 4,
        }
    }
}

/// Where a tensor's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In the interpreter's arena, at the offset the memory plan gave it.
    Arena,
    /// In the model's data section (weights, biases).
    Constant,
}

/// Quantization of a tensor: `real = scale * (q - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quant<'a> {
    /// Not quantized (plain integers).
    None,
    /// One scale and zero point for the whole tensor.
    PerTensor {
        /// Scale.
        scale: f32,
        /// Zero point.
        zero_point: i32,
    },
    /// One scale per slice along `axis`, zero point 0 (symmetric weights).
    PerChannel {
        /// Scales, one per channel.
        scales: &'a [f32],
        /// Axis the channels run along.
        axis: usize,
    },
}

/// A validated tensor record.
#[derive(Debug, Clone, Copy)]
pub struct Tensor<'a> {
    /// Element type.
    pub dtype: DType,
    /// Arena or constant.
    pub storage: Storage,
    /// Quantization.
    pub quant: Quant<'a>,
    dims: [usize; MAX_RANK],
    rank: usize,
    offset: usize,
    byte_len: usize,
    constant: &'a [u8],
}

impl<'a> Tensor<'a> {
    /// Decodes a record. With `check_values` every field is checked first (codes, shape,
    /// sizes, bounds, scales and zero points, [`Self::check`]), which
    /// [`Model::parse`](super::Model::parse) does once for every record; without, the
    /// record is taken as validated and only slice bounds are checked, so that the
    /// per-inference decode stays cheap.
    pub(super) fn parse(
        record: &'a [u8],
        data: &'a [u8],
        arena_size: usize,
        check_values: bool,
    ) -> Result<Self, Error> {
        // A fixed-size view: every field read below is at a constant offset, so the
        // per-inference decode has no bounds checks left.
        let rec: &[u8; TENSOR_RECORD_LEN] = record.try_into().map_err(|_| Error::Truncated)?;
        if check_values {
            Self::check(rec, data, arena_size)?;
        }
        Self::parse_validated(rec, data)
    }

    /// Every check of a record: codes, shape, sizes, bounds, alignment, scales and zero
    /// points. A record that passes decodes with [`Self::parse_validated`].
    fn check(rec: &[u8; TENSOR_RECORD_LEN], data: &[u8], arena_size: usize) -> Result<(), Error> {
        let u16_at = |at: usize| u16::from_le_bytes([rec[at], rec[at + 1]]);
        let u32_at =
            |at: usize| u32::from_le_bytes([rec[at], rec[at + 1], rec[at + 2], rec[at + 3]]);
        let dtype = DType::from_code(rec[0])?;
        let rank = rec[1] as usize;
        let storage = match rec[2] {
            0 => Storage::Arena,
            1 => Storage::Constant,
            _ => return Err(Error::InvalidValue),
        };
        if rank == 0 || rank > MAX_RANK {
            return Err(Error::InvalidValue);
        }
        let mut dims = [1usize; MAX_RANK];
        let mut elements = 1usize;
        for (i, d) in dims.iter_mut().enumerate().take(rank) {
            *d = u16_at(4 + 2 * i) as usize;
            if *d == 0 {
                return Err(Error::InvalidValue);
            }
            elements = elements.checked_mul(*d).ok_or(Error::OutOfBounds)?;
        }
        let offset = u32_at(12) as usize;
        let byte_len = u32_at(16) as usize;
        if elements.checked_mul(dtype.size()) != Some(byte_len) {
            return Err(Error::ShapeMismatch);
        }
        let end = offset.checked_add(byte_len).ok_or(Error::OutOfBounds)?;
        match storage {
            Storage::Arena => {
                if end > arena_size || offset % 4 != 0 {
                    return Err(Error::OutOfBounds);
                }
            }
            Storage::Constant => {
                if offset % 4 != 0 {
                    return Err(Error::Misaligned);
                }
                data.get(offset..end).ok_or(Error::OutOfBounds)?;
            }
        }
        let zero_point = u32_at(24) as i32;
        match rec[3] {
            0 => {}
            1 => {
                let scale = f32::from_bits(u32_at(20));
                if !(scale.is_finite() && scale > 0.0) {
                    return Err(Error::InvalidValue);
                }
                let zp_ok = match dtype {
                    DType::I8 => (-128..=127).contains(&zero_point),
                    DType::I32 => zero_point == 0,
                };
                if !zp_ok {
                    return Err(Error::InvalidValue);
                }
            }
            2 => {
                let axis = rec[28] as usize;
                if axis >= rank || zero_point != 0 {
                    return Err(Error::InvalidValue);
                }
                let scales = f32_slice(data, u32_at(20) as usize, dims[axis])?;
                if scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                    return Err(Error::InvalidValue);
                }
            }
            _ => return Err(Error::InvalidValue),
        }
        Ok(())
    }

    /// The per-inference decode of a record that [`Self::parse`] with `check_values`
    /// accepted when the model was parsed (the model bytes are immutable): the codes,
    /// shape, sizes and quantization were checked then and are read without checking
    /// again. Gives the same tensor as the checked decode for such a record. Every slice
    /// is still taken with a bounds check, so a record that was never validated yields
    /// an error or a wrong-but-safe tensor, never a panic or an out-of-bounds read.
    fn parse_validated(rec: &'a [u8; TENSOR_RECORD_LEN], data: &'a [u8]) -> Result<Self, Error> {
        let u16_at = |at: usize| u16::from_le_bytes([rec[at], rec[at + 1]]);
        let u32_at =
            |at: usize| u32::from_le_bytes([rec[at], rec[at + 1], rec[at + 2], rec[at + 3]]);
        let dtype = if rec[0] == DType::I32.code() {
            DType::I32
        } else {
            DType::I8
        };
        let rank = (rec[1] as usize).clamp(1, MAX_RANK);
        let mut dims = [1usize; MAX_RANK];
        for (i, d) in dims.iter_mut().enumerate().take(rank) {
            *d = u16_at(4 + 2 * i) as usize;
        }
        let offset = u32_at(12) as usize;
        let byte_len = u32_at(16) as usize;
        let (storage, constant) = if rec[2] == 1 {
            let end = offset.checked_add(byte_len).ok_or(Error::OutOfBounds)?;
            (
                Storage::Constant,
                data.get(offset..end).ok_or(Error::OutOfBounds)?,
            )
        } else {
            (Storage::Arena, &[][..])
        };
        let quant = match rec[3] {
            1 => Quant::PerTensor {
                scale: f32::from_bits(u32_at(20)),
                zero_point: u32_at(24) as i32,
            },
            2 => {
                let axis = rec[28] as usize;
                let channels = *dims.get(axis).ok_or(Error::InvalidValue)?;
                Quant::PerChannel {
                    scales: f32_slice(data, u32_at(20) as usize, channels)?,
                    axis,
                }
            }
            _ => Quant::None,
        };
        Ok(Tensor {
            dtype,
            storage,
            quant,
            dims,
            rank,
            offset,
            byte_len,
            constant,
        })
    }

    /// Dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        &self.dims[..self.rank]
    }

    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.byte_len / self.dtype.size()
    }

    /// Size in bytes.
    pub fn byte_len(&self) -> usize {
        self.byte_len
    }

    /// Byte range in the arena (arena tensors) or the data section (constants).
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.byte_len
    }

    /// The shape as NHWC: missing leading dimensions are 1 (`[W, C]` is `1x1xWxC`).
    pub fn shape(&self) -> Shape {
        let mut d = [1usize; MAX_RANK];
        d[MAX_RANK - self.rank..].copy_from_slice(self.dims());
        Shape::new(d[0], d[1], d[2], d[3])
    }

    /// Scale and zero point of a per-tensor quantized tensor.
    pub fn scale_zero_point(&self) -> Result<(f32, i32), Error> {
        match self.quant {
            Quant::PerTensor { scale, zero_point } => Ok((scale, zero_point)),
            _ => Err(Error::InvalidValue),
        }
    }

    /// Constant int8 data, in place.
    pub fn const_i8(&self) -> Result<&'a [i8], Error> {
        if self.storage != Storage::Constant || self.dtype != DType::I8 {
            return Err(Error::WrongDType);
        }
        Ok(bytemuck::cast_slice(self.constant))
    }

    /// Constant int32 data, in place.
    pub fn const_i32(&self) -> Result<&'a [i32], Error> {
        if self.storage != Storage::Constant || self.dtype != DType::I32 {
            return Err(Error::WrongDType);
        }
        i32_slice(self.constant, 0, self.elements())
    }
}
