use core::fmt;

/// Everything that can go wrong while parsing or running a model.
///
/// Every malformed input maps to one of these; nothing in the crate panics on bad data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The buffer ends before a structure that should be there.
    Truncated,
    /// The file does not start with the `.ekd` magic bytes.
    BadMagic,
    /// The file's major version is newer than this runtime understands.
    UnsupportedVersion {
        /// Major version found in the file.
        major: u16,
        /// Minor version found in the file.
        minor: u16,
    },
    /// The CRC32 stored in the header does not match the body.
    BadChecksum {
        /// Checksum stored in the file.
        stored: u32,
        /// Checksum computed over the body.
        computed: u32,
    },
    /// The model buffer does not start on a 16-byte boundary (needed to read tensors in place).
    Misaligned,
    /// An offset or length points outside the buffer, section or arena it refers to.
    OutOfBounds,
    /// A section that every model needs is missing.
    MissingSection(u16),
    /// A section marked as required has a kind this runtime does not know.
    UnsupportedSection(u16),
    /// A field holds a value outside its allowed set (dtype, quantization kind, ...).
    InvalidValue,
    /// A tensor index points past the tensor table.
    BadTensorIndex(u16),
    /// Tensor shapes or sizes do not fit together.
    ShapeMismatch,
    /// A tensor has a dtype the op cannot take.
    WrongDType,
    /// An op code this runtime does not implement.
    UnsupportedOp(u8),
    /// The op's parameters are outside what its kernel supports.
    UnsupportedParams,
    /// A model has more tensors, ops or inputs than the runtime's fixed capacity.
    CapacityExceeded,
    /// The arena handed to the interpreter is smaller than the model's memory plan.
    ArenaTooSmall {
        /// Bytes the model's memory plan needs.
        needed: usize,
    },
    /// An input or output index is out of range.
    BadIndex,
    /// A float input is NaN or infinite.
    NonFinite,
    /// The caller's buffer has the wrong length.
    LengthMismatch {
        /// Length the model expects.
        expected: usize,
        /// Length the caller gave.
        got: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated => f.write_str("model file is truncated"),
            Error::BadMagic => f.write_str("not an .ekd model (bad magic bytes)"),
            Error::UnsupportedVersion { major, minor } => write!(
                f,
                "model format version {major}.{minor} is newer than this runtime supports ({}.x)",
                crate::format::VERSION_MAJOR
            ),
            Error::BadChecksum { stored, computed } => write!(
                f,
                "checksum mismatch: file says {stored:#010x}, body hashes to {computed:#010x}"
            ),
            Error::Misaligned => f.write_str("model buffer is not 16-byte aligned"),
            Error::OutOfBounds => f.write_str("an offset or length points outside its buffer"),
            Error::MissingSection(k) => write!(f, "required section {k} is missing"),
            Error::UnsupportedSection(k) => {
                write!(f, "required section kind {k} is unknown to this runtime")
            }
            Error::InvalidValue => f.write_str("a field holds an invalid value"),
            Error::BadTensorIndex(i) => write!(f, "tensor index {i} is out of range"),
            Error::ShapeMismatch => f.write_str("tensor shapes do not match"),
            Error::WrongDType => f.write_str("tensor has the wrong data type for its op"),
            Error::UnsupportedOp(c) => write!(f, "unsupported op code {c}"),
            Error::UnsupportedParams => f.write_str("op parameters are not supported"),
            Error::CapacityExceeded => f.write_str("model exceeds the runtime's fixed capacity"),
            Error::ArenaTooSmall { needed } => {
                write!(f, "arena too small: the model needs {needed} bytes")
            }
            Error::BadIndex => f.write_str("input or output index out of range"),
            Error::NonFinite => f.write_str("input value is NaN or infinite"),
            Error::LengthMismatch { expected, got } => {
                write!(f, "expected {expected} values, got {got}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// A kernel's refusal: parameters it has no code for, or operands that disagree with
/// the shapes.
impl From<edgekd_kernels::KernelError> for Error {
    fn from(e: edgekd_kernels::KernelError) -> Self {
        match e {
            edgekd_kernels::KernelError::UnsupportedParams => Error::UnsupportedParams,
            _ => Error::ShapeMismatch,
        }
    }
}
