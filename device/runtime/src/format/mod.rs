//! The `.ekd` model format: constants, the validating zero-copy parser, and typed views.
//!
//! The byte layout is specified in `docs/format.md`; this module is its only reader.
//! [`Model::parse`] checks everything once (header, checksum, sections, every tensor
//! and every op's shapes, parameters and arena ranges), so that running a parsed model
//! cannot index out of bounds.

mod bytes;
mod meta;
mod ops;
mod tensor;

pub use meta::{Labels, Metadata};
pub use ops::{Op, OpCode, OpIter, OpParams, OP_HEADER_LEN};
pub use tensor::{DType, Quant, Storage, Tensor, MAX_RANK};

use crate::Error;
use bytes::Reader;

/// The four bytes every `.ekd` file starts with.
pub const MAGIC: [u8; 4] = *b"EKDM";
/// Major version: a reader refuses files with a larger one.
pub const VERSION_MAJOR: u16 = 1;
/// Minor version: additions a v1 reader can skip (optional sections, trailing fields).
pub const VERSION_MINOR: u16 = 0;
/// Fixed header length in bytes (the header stores its own length for growth).
pub const HEADER_LEN: usize = 32;
/// Bytes per entry of the section table.
pub const SECTION_ENTRY_LEN: usize = 12;
/// Alignment of every section and every constant tensor, relative to the file start.
pub const ALIGN: usize = 16;
/// Bytes per tensor record.
pub const TENSOR_RECORD_LEN: usize = 32;
/// Index that marks an absent optional tensor (e.g. no bias).
pub const NO_TENSOR: u16 = 0xFFFF;
/// Section flag: a reader that does not know this section kind must refuse the file.
pub const SECTION_REQUIRED: u16 = 1;

/// Section kinds.
pub mod section {
    /// Graph: arena size, model inputs and outputs.
    pub const GRAPH: u16 = 1;
    /// Tensor table.
    pub const TENSORS: u16 = 2;
    /// Op list, in execution order.
    pub const OPS: u16 = 3;
    /// Constant data (weights, biases, scales, requantization parameters).
    pub const DATA: u16 = 4;
    /// Metadata: names, class labels, input preprocessing.
    pub const META: u16 = 5;
}

/// Most inputs or outputs a model may declare.
pub const MAX_IO: usize = 8;

/// One entry of the section table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionInfo {
    /// Section kind (see [`section`]).
    pub kind: u16,
    /// Flags ([`SECTION_REQUIRED`]).
    pub flags: u16,
    /// Offset from the start of the file.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

/// A validated, zero-copy view of an `.ekd` model.
///
/// Cheap to copy: it holds only slices into the original buffer.
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    bytes: &'a [u8],
    version: (u16, u16),
    graph: &'a [u8],
    tensors: &'a [u8],
    ops: &'a [u8],
    op_count: usize,
    data: &'a [u8],
    meta: Option<&'a [u8]>,
    arena_size: usize,
}

impl<'a> Model<'a> {
    /// Parses and fully validates a model.
    ///
    /// The buffer must start on a 16-byte boundary (as TFLite Micro also requires), so
    /// weights and per-channel parameters can be read in place.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        if bytes.as_ptr() as usize % ALIGN != 0 {
            return Err(Error::Misaligned);
        }
        let header = Reader::new(bytes);
        if header.slice(0, 4)? != MAGIC {
            return Err(Error::BadMagic);
        }
        let major = header.u16(4)?;
        let minor = header.u16(6)?;
        if major != VERSION_MAJOR {
            return Err(Error::UnsupportedVersion { major, minor });
        }
        let file_len = header.u32(8)? as usize;
        if file_len > bytes.len() {
            return Err(Error::Truncated);
        }
        let bytes = &bytes[..file_len];
        let stored = header.u32(12)?;
        let computed = checksum(bytes.get(16..).ok_or(Error::Truncated)?);
        if stored != computed {
            return Err(Error::BadChecksum { stored, computed });
        }
        let header = Reader::new(bytes);
        let section_count = header.u16(16)? as usize;
        let header_len = header.u16(18)? as usize;
        if header_len < HEADER_LEN {
            return Err(Error::InvalidValue);
        }

        let mut found: [Option<&'a [u8]>; 6] = [None; 6];
        for i in 0..section_count {
            let entry = header_len
                .checked_add(i.checked_mul(SECTION_ENTRY_LEN).ok_or(Error::OutOfBounds)?)
                .ok_or(Error::OutOfBounds)?;
            let info = read_section_entry(&header, entry)?;
            if info.offset % ALIGN != 0 {
                return Err(Error::Misaligned);
            }
            let body = header.slice(info.offset, info.len)?;
            match info.kind {
                k @ section::GRAPH..=section::META => {
                    let slot = &mut found[k as usize];
                    if slot.is_some() {
                        return Err(Error::InvalidValue);
                    }
                    *slot = Some(body);
                }
                k if info.flags & SECTION_REQUIRED != 0 => {
                    return Err(Error::UnsupportedSection(k))
                }
                _ => {} // Unknown optional section: skipped by design.
            }
        }
        let need = |k: u16| found[k as usize].ok_or(Error::MissingSection(k));
        let graph = need(section::GRAPH)?;
        let tensors = need(section::TENSORS)?;
        let ops = need(section::OPS)?;
        let data = need(section::DATA)?;
        if tensors.len() % TENSOR_RECORD_LEN != 0
            || tensors.len() / TENSOR_RECORD_LEN >= NO_TENSOR as usize
        {
            return Err(Error::InvalidValue);
        }
        let graph_reader = Reader::new(graph);
        let arena_size = graph_reader.u32(0)? as usize;
        let op_count = Reader::new(ops).u32(0)? as usize;

        let model = Model {
            bytes,
            version: (major, minor),
            graph,
            tensors,
            ops,
            op_count,
            data,
            meta: found[section::META as usize],
            arena_size,
        };
        model.validate()?;
        Ok(model)
    }

    fn validate(&self) -> Result<(), Error> {
        for i in 0..self.tensor_count() {
            self.tensor_record(i, true)?;
        }
        let (n_in, n_out) = self.io_counts()?;
        if n_in == 0 || n_out == 0 || n_in > MAX_IO || n_out > MAX_IO {
            return Err(Error::InvalidValue);
        }
        for i in 0..n_in {
            let t = self.input(i)?;
            if t.storage != Storage::Arena || t.dtype != DType::I8 {
                return Err(Error::WrongDType);
            }
        }
        for i in 0..n_out {
            let t = self.output(i)?;
            if t.storage != Storage::Arena || t.dtype != DType::I8 {
                return Err(Error::WrongDType);
            }
        }
        let mut count = 0usize;
        for op in self.ops() {
            op?.validate(self)?;
            count += 1;
        }
        if count != self.op_count {
            return Err(Error::InvalidValue);
        }
        if let Some(meta) = self.meta {
            Metadata::parse(meta)?;
        }
        Ok(())
    }

    /// The whole file.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// `(major, minor)` format version of the file.
    pub fn version(&self) -> (u16, u16) {
        self.version
    }

    /// Bytes of arena the memory plan needs.
    pub fn arena_size(&self) -> usize {
        self.arena_size
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len() / TENSOR_RECORD_LEN
    }

    /// Tensor `index` (its values were validated when the model was parsed).
    pub fn tensor(&self, index: usize) -> Result<Tensor<'a>, Error> {
        self.tensor_record(index, false)
    }

    fn tensor_record(&self, index: usize, check_values: bool) -> Result<Tensor<'a>, Error> {
        let bad = || Error::BadTensorIndex(index.min(u16::MAX as usize) as u16);
        let start = index.checked_mul(TENSOR_RECORD_LEN).ok_or_else(bad)?;
        let end = start.checked_add(TENSOR_RECORD_LEN).ok_or_else(bad)?;
        let record = self.tensors.get(start..end).ok_or_else(bad)?;
        Tensor::parse(record, self.data, self.arena_size, check_values)
    }

    /// Number of ops.
    pub fn op_count(&self) -> usize {
        self.op_count
    }

    /// The ops in execution order.
    pub fn ops(&self) -> OpIter<'a> {
        OpIter::new(self.ops, self.op_count)
    }

    fn io_counts(&self) -> Result<(usize, usize), Error> {
        let r = Reader::new(self.graph);
        Ok((r.u8(4)? as usize, r.u8(5)? as usize))
    }

    fn io_index(&self, slot: usize) -> Result<usize, Error> {
        Ok(Reader::new(self.graph).u16(8 + 2 * slot)? as usize)
    }

    /// Number of model inputs.
    pub fn input_count(&self) -> usize {
        self.io_counts().map(|c| c.0).unwrap_or(0)
    }

    /// Number of model outputs.
    pub fn output_count(&self) -> usize {
        self.io_counts().map(|c| c.1).unwrap_or(0)
    }

    /// Tensor index of input `i`.
    pub fn input_index(&self, i: usize) -> Result<usize, Error> {
        if i >= self.input_count() {
            return Err(Error::BadIndex);
        }
        self.io_index(i)
    }

    /// Tensor index of output `i`.
    pub fn output_index(&self, i: usize) -> Result<usize, Error> {
        if i >= self.output_count() {
            return Err(Error::BadIndex);
        }
        self.io_index(self.input_count() + i)
    }

    /// Input tensor `i`.
    pub fn input(&self, i: usize) -> Result<Tensor<'a>, Error> {
        self.tensor(self.input_index(i)?)
    }

    /// Output tensor `i`.
    pub fn output(&self, i: usize) -> Result<Tensor<'a>, Error> {
        self.tensor(self.output_index(i)?)
    }

    /// Names, labels and input preprocessing, when the file has them.
    pub fn metadata(&self) -> Option<Metadata<'a>> {
        self.meta.and_then(|m| Metadata::parse(m).ok())
    }

    /// The section table, for inspection tools.
    pub fn sections(&self) -> impl Iterator<Item = SectionInfo> + 'a {
        let r = Reader::new(self.bytes);
        let count = r.u16(16).unwrap_or(0) as usize;
        let header_len = r.u16(18).unwrap_or(HEADER_LEN as u16) as usize;
        (0..count)
            .filter_map(move |i| read_section_entry(&r, header_len + i * SECTION_ENTRY_LEN).ok())
    }

    /// Bytes of weights and biases (constant tensors); everything else is format overhead.
    pub fn payload_bytes(&self) -> usize {
        (0..self.tensor_count())
            .filter_map(|i| self.tensor(i).ok())
            .filter(|t| t.storage == Storage::Constant)
            .map(|t| t.byte_len())
            .sum()
    }

    /// Bytes of the file that are not weights or biases: headers, tables, quantization
    /// parameters, metadata and alignment padding.
    pub fn overhead_bytes(&self) -> usize {
        self.bytes.len() - self.payload_bytes()
    }

    /// Multiply-accumulates of one inference.
    pub fn macs(&self) -> u64 {
        self.ops()
            .filter_map(|op| op.ok())
            .map(|op| op.macs(self).unwrap_or(0))
            .sum()
    }

    pub(crate) fn data(&self) -> &'a [u8] {
        self.data
    }
}

fn read_section_entry(r: &Reader<'_>, at: usize) -> Result<SectionInfo, Error> {
    Ok(SectionInfo {
        kind: r.u16(at)?,
        flags: r.u16(at + 2)?,
        offset: r.u32(at + 4)? as usize,
        len: r.u32(at + 8)? as usize,
    })
}

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 (IEEE 802.3, as zlib) of `bytes`: the checksum stored in the header covers
/// every byte from offset 16 to the end of the file.
pub fn checksum(bytes: &[u8]) -> u32 {
    CRC.checksum(bytes)
}
