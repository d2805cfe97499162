//! File I/O shared by the subcommands: `.npy` matrices, model files, and atomic writes
//! (a temp file in the destination directory renamed into place, so a failed command
//! never leaves a half-written output behind).

use anyhow::{bail, Context, Result};
use edgekd_runtime::writer::AlignedBytes;
use npyz::{TypeChar, WriterBuilder};
use std::path::Path;

/// A row-major matrix read from or written to `.npy`.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix<T> {
    /// Rows (samples).
    pub rows: usize,
    /// Columns (features per sample).
    pub cols: usize,
    /// `rows * cols` values.
    pub data: Vec<T>,
}

impl<T> Matrix<T> {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// Element types an `.npy` file may hold, as far as edgekd cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyKind {
    /// int8 values (already quantized).
    I8,
    /// Any float.
    Float,
    /// Any other integer.
    Int,
}

fn open_npy(path: &Path) -> Result<npyz::NpyFile<std::io::Cursor<Vec<u8>>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    npyz::NpyFile::new(std::io::Cursor::new(bytes))
        .with_context(|| format!("{} is not a valid .npy file", path.display()))
}

fn kind_of(file: &npyz::NpyFile<std::io::Cursor<Vec<u8>>>, path: &Path) -> Result<NpyKind> {
    match file.dtype() {
        npyz::DType::Plain(ts) => Ok(match (ts.type_char(), ts.size_field()) {
            (TypeChar::Int, 1) => NpyKind::I8,
            (TypeChar::Float, _) => NpyKind::Float,
            (TypeChar::Int | TypeChar::Uint, _) => NpyKind::Int,
            _ => bail!("{}: unsupported dtype {ts}", path.display()),
        }),
        other => bail!("{}: unsupported dtype {other:?}", path.display()),
    }
}

/// Shape as `(rows, cols)`: a 1-D array is one row; N-D arrays flatten after axis 0.
fn matrix_shape(shape: &[u64], path: &Path) -> Result<(usize, usize)> {
    let fail = || anyhow::anyhow!("{}: array shape {shape:?} is too large", path.display());
    match shape {
        [] => bail!("{}: a scalar is not a batch of samples", path.display()),
        [n] => Ok((1, usize::try_from(*n).map_err(|_| fail())?)),
        [n, rest @ ..] => {
            let cols = rest
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .ok_or_else(fail)?;
            Ok((
                usize::try_from(*n).map_err(|_| fail())?,
                usize::try_from(cols).map_err(|_| fail())?,
            ))
        }
    }
}

/// The element kind stored in an `.npy` file.
pub fn npy_kind(path: &Path) -> Result<NpyKind> {
    kind_of(&open_npy(path)?, path)
}

/// Reads a float matrix (f32 or f64 on disk); NaN and infinities are refused.
pub fn read_f32_matrix(path: &Path) -> Result<Matrix<f32>> {
    let file = open_npy(path)?;
    let (rows, cols) = matrix_shape(file.shape(), path)?;
    let data: Vec<f32> = match file.dtype() {
        npyz::DType::Plain(ts) if ts.type_char() == TypeChar::Float && ts.size_field() == 8 => file
            .into_vec::<f64>()?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        npyz::DType::Plain(ts) if ts.type_char() == TypeChar::Float && ts.size_field() == 4 => {
            file.into_vec::<f32>()?
        }
        other => bail!(
            "{}: expected float32 or float64 data, found {other:?}",
            path.display()
        ),
    };
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: value {} at sample {}, feature {} is not finite",
            path.display(),
            data[i],
            i / cols.max(1),
            i % cols.max(1)
        );
    }
    Ok(Matrix { rows, cols, data })
}

/// Reads an int8 matrix.
pub fn read_i8_matrix(path: &Path) -> Result<Matrix<i8>> {
    let file = open_npy(path)?;
    let (rows, cols) = matrix_shape(file.shape(), path)?;
    if kind_of(&file, path)? != NpyKind::I8 {
        bail!("{}: expected int8 data", path.display());
    }
    Ok(Matrix {
        rows,
        cols,
        data: file.into_vec::<i8>()?,
    })
}

/// Reads integer labels (any integer dtype) as `i64`.
pub fn read_labels(path: &Path) -> Result<Vec<i64>> {
    let file = open_npy(path)?;
    let ts = match file.dtype() {
        npyz::DType::Plain(ts) => ts,
        other => bail!("{}: unsupported label dtype {other:?}", path.display()),
    };
    let values = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Int, 1) => file.into_vec::<i8>()?.into_iter().map(i64::from).collect(),
        (TypeChar::Int, 2) => file.into_vec::<i16>()?.into_iter().map(i64::from).collect(),
        (TypeChar::Int, 4) => file.into_vec::<i32>()?.into_iter().map(i64::from).collect(),
        (TypeChar::Int, 8) => file.into_vec::<i64>()?,
        (TypeChar::Uint, 1) => file.into_vec::<u8>()?.into_iter().map(i64::from).collect(),
        _ => bail!("{}: labels must be integers, found {ts}", path.display()),
    };
    Ok(values)
}

/// Encodes a matrix as `.npy` bytes with shape `[rows, cols]`.
pub fn npy_bytes<T: npyz::AutoSerialize + Copy>(m: &Matrix<T>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[m.rows as u64, m.cols as u64])
            .writer(&mut out)
            .begin_nd()?;
        w.extend(m.data.iter().copied())?;
        w.finish()?;
    }
    Ok(out)
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    // Temp files are created private (0600); a written output is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Reads a model file into a 16-byte-aligned buffer, ready for `Model::parse`.
pub fn read_model(path: &Path) -> Result<AlignedBytes> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(AlignedBytes::copy_from(&bytes))
}

/// `base.join(rel)` with `.` and `dir/..` removed lexically (no file-system access), so
/// paths from a recipe print as `models/teachers/t.onnx`, not `models/recipes/../teachers/t.onnx`.
/// A leading `..` that has nothing to cancel is kept.
pub fn join_clean(base: &Path, rel: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in base.join(rel).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::join_clean;
    use std::path::Path;

    #[test]
    fn join_clean_removes_dot_and_dotdot_lexically() {
        let j = |b: &str, r: &str| join_clean(Path::new(b), Path::new(r));
        assert_eq!(
            j("models/recipes", "../teachers/t.onnx"),
            Path::new("models/teachers/t.onnx")
        );
        assert_eq!(
            j("models/recipes", "./d/../x.npy"),
            Path::new("models/recipes/x.npy")
        );
        assert_eq!(j("a", "../../x"), Path::new("../x"));
        assert_eq!(j("/r", "../../x"), Path::new("/x"));
        assert_eq!(j("a", "/abs/y"), Path::new("/abs/y"));
    }
}
