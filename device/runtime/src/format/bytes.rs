//! Bounds-checked little-endian field reads: every read returns `Err` instead of panicking.

use crate::Error;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub(crate) fn slice(&self, at: usize, len: usize) -> Result<&'a [u8], Error> {
        let end = at.checked_add(len).ok_or(Error::OutOfBounds)?;
        self.bytes.get(at..end).ok_or(Error::Truncated)
    }

    fn array<const N: usize>(&self, at: usize) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.slice(at, N)?);
        Ok(out)
    }

    pub(crate) fn u8(&self, at: usize) -> Result<u8, Error> {
        self.bytes.get(at).copied().ok_or(Error::Truncated)
    }

    pub(crate) fn i8(&self, at: usize) -> Result<i8, Error> {
        Ok(self.u8(at)? as i8)
    }

    pub(crate) fn u16(&self, at: usize) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array(at)?))
    }

    pub(crate) fn u32(&self, at: usize) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array(at)?))
    }

    pub(crate) fn i32(&self, at: usize) -> Result<i32, Error> {
        Ok(i32::from_le_bytes(self.array(at)?))
    }

    pub(crate) fn f32(&self, at: usize) -> Result<f32, Error> {
        Ok(f32::from_le_bytes(self.array(at)?))
    }
}

/// Views `len` little-endian `i32`s at `offset` of `data` in place.
pub(crate) fn i32_slice(data: &[u8], offset: usize, len: usize) -> Result<&[i32], Error> {
    let bytes = Reader::new(data).slice(offset, len.checked_mul(4).ok_or(Error::OutOfBounds)?)?;
    bytemuck::try_cast_slice(bytes).map_err(|_| Error::Misaligned)
}

/// Views `len` little-endian `f32`s at `offset` of `data` in place.
pub(crate) fn f32_slice(data: &[u8], offset: usize, len: usize) -> Result<&[f32], Error> {
    let bytes = Reader::new(data).slice(offset, len.checked_mul(4).ok_or(Error::OutOfBounds)?)?;
    bytemuck::try_cast_slice(bytes).map_err(|_| Error::Misaligned)
}
