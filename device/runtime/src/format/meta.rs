//! The optional metadata section: model name, input/output names, class labels, and the
//! preprocessing that maps raw sensor values onto the model's input.

use super::bytes::Reader;
use crate::Error;

/// Model metadata, borrowed from the file.
#[derive(Debug, Clone, Copy)]
pub struct Metadata<'a> {
    /// Model name.
    pub name: &'a str,
    /// Name of the (first) input.
    pub input_name: &'a str,
    /// Name of the (first) output.
    pub output_name: &'a str,
    /// Class labels, in output order.
    pub labels: Labels<'a>,
    preprocess: &'a [u8],
    preprocess_count: usize,
}

/// Class labels stored as length-prefixed strings.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> Labels<'a> {
    /// Number of labels.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the model has no labels.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Label `i`.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        self.iter().nth(i)
    }

    /// All labels in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let bytes = self.bytes;
        let mut at = 0usize;
        (0..self.count).map_while(move |_| {
            let (s, next) = read_str(bytes, at).ok()?;
            at = next;
            Some(s)
        })
    }
}

fn read_str(bytes: &[u8], at: usize) -> Result<(&str, usize), Error> {
    let r = Reader::new(bytes);
    let len = r.u16(at)? as usize;
    let s = r.slice(at + 2, len)?;
    let s = core::str::from_utf8(s).map_err(|_| Error::InvalidValue)?;
    Ok((s, at + 2 + len))
}

impl<'a> Metadata<'a> {
    pub(super) fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let (name, at) = read_str(bytes, 0)?;
        let (input_name, at) = read_str(bytes, at)?;
        let (output_name, at) = read_str(bytes, at)?;
        let r = Reader::new(bytes);
        let count = r.u16(at)? as usize;
        let labels_start = at + 2;
        let mut end = labels_start;
        for _ in 0..count {
            end = read_str(bytes, end)?.1;
        }
        let labels = Labels {
            bytes: &bytes[labels_start..end],
            count,
        };
        let preprocess_count = r.u16(end)? as usize;
        let preprocess = r.slice(end + 2, preprocess_count * 8)?;
        for i in 0..preprocess_count {
            let scale = Reader::new(preprocess).f32(8 * i + 4)?;
            let offset = Reader::new(preprocess).f32(8 * i)?;
            if !scale.is_finite() || !offset.is_finite() {
                return Err(Error::InvalidValue);
            }
        }
        Ok(Metadata {
            name,
            input_name,
            output_name,
            labels,
            preprocess,
            preprocess_count,
        })
    }

    /// Number of preprocessing entries: 0 (none), 1 (whole input) or one per channel.
    pub fn preprocess_len(&self) -> usize {
        self.preprocess_count
    }

    /// `(offset, scale)` for element `i` of a flattened input with `channels` channels:
    /// the model sees `(raw - offset) * scale`. Identity when the model stores none.
    pub fn preprocess(&self, i: usize, channels: usize) -> (f32, f32) {
        let slot = match self.preprocess_count {
            0 => return (0.0, 1.0),
            1 => 0,
            n => (i % channels.max(1)) % n,
        };
        let r = Reader::new(self.preprocess);
        match (r.f32(8 * slot), r.f32(8 * slot + 4)) {
            (Ok(o), Ok(s)) => (o, s),
            _ => (0.0, 1.0),
        }
    }
}
