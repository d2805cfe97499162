//! Teacher-output cache, addressed by content.
//!
//! The key is a SHA-256 of the teacher's fingerprint (which hashes the teacher file, so editing
//! or retraining the teacher invalidates every entry) and of the exact input rows. An augmented
//! epoch view is a function of (augmentation seed, epoch, pool) only, so students trained with
//! the same teacher and augmentation seed — e.g. a CNN and an MLP student, or a resumed run —
//! hit the cache instead of re-running the teacher. Without augmentation every epoch hits the
//! in-memory entry.

use super::Teacher;
use anyhow::Result;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Cache statistics and storage.
pub struct TeacherCache {
    dir: Option<PathBuf>,
    last: Option<(String, Vec<f32>)>,
    /// Lookups answered from memory or disk.
    pub hits: usize,
    /// Lookups that ran the teacher.
    pub misses: usize,
}

impl TeacherCache {
    /// A cache in `dir` (memory only when `None`).
    pub fn new(dir: Option<PathBuf>) -> TeacherCache {
        TeacherCache {
            dir,
            last: None,
            hits: 0,
            misses: 0,
        }
    }

    /// Log-probabilities of `teacher` on `n` rows of `x`, from the cache when possible.
    pub fn log_probs(
        &mut self,
        teacher: &mut dyn Teacher,
        x: &[f32],
        n: usize,
    ) -> Result<Vec<f32>> {
        let mut h = Sha256::new();
        h.update(teacher.fingerprint().as_bytes());
        h.update((n as u64).to_le_bytes());
        for v in x {
            h.update(v.to_le_bytes());
        }
        let key = format!("{:x}", h.finalize());
        if let Some((k, v)) = &self.last {
            if *k == key {
                self.hits += 1;
                return Ok(v.clone());
            }
        }
        let expect = n * teacher.classes();
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("{key}.f32"));
            if let Ok(bytes) = std::fs::read(&path) {
                if bytes.len() == expect * 4 {
                    let v: Vec<f32> = bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    self.hits += 1;
                    self.last = Some((key, v.clone()));
                    return Ok(v);
                }
            }
        }
        let v = teacher.log_probs(x, n)?;
        self.misses += 1;
        if let Some(dir) = &self.dir {
            let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
            // A failed cache write only costs time later; the run itself must not fail on it.
            let _ = crate::io::write_atomic(&dir.join(format!("{key}.f32")), &bytes);
        }
        self.last = Some((key, v.clone()));
        Ok(v)
    }
}
