//! Stage bookkeeping: a stage is skipped when the content hash of everything it reads
//! (its recipe sections, input files, the tool's version) equals the one recorded when
//! it last finished and its outputs are still there.

use crate::io;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File in the output folder that records finished stages.
const RECORD: &str = "stages.json";

/// Recorded stage keys of one output folder.
#[derive(Debug)]
pub struct Stages {
    path: PathBuf,
    done: BTreeMap<String, String>,
}

/// Builds a stage key from labelled parts.
#[derive(Debug, Clone)]
pub struct Key(Sha256);

impl Key {
    /// A key for `stage`, seeded with the tool's version (a new version redoes every stage).
    pub fn new(stage: &str) -> Key {
        let mut h = Sha256::new();
        h.update(b"edgekd ");
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.update(b"\0");
        h.update(stage.as_bytes());
        Key(h)
    }

    /// Adds a labelled value.
    pub fn add(mut self, label: &str, value: &[u8]) -> Key {
        self.0.update((label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value);
        self
    }

    /// Adds a value serialized as JSON (recipe sections).
    pub fn add_json(self, label: &str, value: &impl serde::Serialize) -> Result<Key> {
        let json = serde_json::to_vec(value)?;
        Ok(self.add(label, &json))
    }

    /// Adds the content hash of a file.
    pub fn add_file(self, label: &str, path: &Path) -> Result<Key> {
        let digest = file_digest(path)?;
        Ok(self.add(label, digest.as_bytes()))
    }

    /// The hex digest.
    pub fn finish(self) -> String {
        format!("{:x}", self.0.finalize())
    }
}

/// SHA-256 of a file's content, hex.
pub fn file_digest(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

impl Stages {
    /// Reads the record of `out` (an empty record when there is none or it is unreadable:
    /// then every stage runs).
    pub fn open(out: &Path) -> Stages {
        let path = out.join(RECORD);
        let done = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Stages { path, done }
    }

    /// True when `stage` finished with `key` and every output still exists.
    pub fn is_fresh(&self, stage: &str, key: &str, outputs: &[PathBuf]) -> bool {
        self.done.get(stage).is_some_and(|k| k == key) && outputs.iter().all(|p| p.exists())
    }

    /// Marks `stage` as started with `key` (a run killed midway is not taken as done) and
    /// tells whether an earlier run had started it with the same key (then it may resume).
    pub fn start(&mut self, stage: &str, key: &str) -> Result<bool> {
        let started = format!("{stage}.started");
        let resumable = self.done.get(&started).is_some_and(|k| k == key);
        self.done.remove(stage);
        self.done.insert(started, key.to_string());
        self.save()?;
        Ok(resumable)
    }

    /// Records that `stage` finished with `key`.
    pub fn finish(&mut self, stage: &str, key: &str) -> Result<()> {
        self.done.insert(stage.to_string(), key.to_string());
        self.save()
    }

    fn save(&self) -> Result<()> {
        io::write_atomic(&self.path, &serde_json::to_vec_pretty(&self.done)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_with_every_part() {
        let a = Key::new("s").add("x", b"1").finish();
        assert_eq!(a, Key::new("s").add("x", b"1").finish());
        assert_ne!(a, Key::new("t").add("x", b"1").finish());
        assert_ne!(a, Key::new("s").add("x", b"2").finish());
        assert_ne!(a, Key::new("s").add("y", b"1").finish());
        // Labels and values cannot run into each other.
        assert_ne!(
            Key::new("s").add("ab", b"c").finish(),
            Key::new("s").add("a", b"bc").finish()
        );
    }

    #[test]
    fn a_stage_is_fresh_only_with_its_key_and_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.txt");
        let mut s = Stages::open(dir.path());
        assert!(!s.is_fresh("q", "k", &[]));
        s.finish("q", "k").unwrap();
        std::fs::write(&out, b"x").unwrap();
        let s2 = Stages::open(dir.path());
        assert!(s2.is_fresh("q", "k", std::slice::from_ref(&out)));
        assert!(!s2.is_fresh("q", "other", std::slice::from_ref(&out)));
        std::fs::remove_file(&out).unwrap();
        assert!(!s2.is_fresh("q", "k", std::slice::from_ref(&out)));
        let mut s3 = Stages::open(dir.path());
        assert!(!s3.start("q", "k").unwrap());
        assert!(!Stages::open(dir.path()).is_fresh("q", "k", &[]));
        assert!(Stages::open(dir.path()).start("q", "k").unwrap());
        assert!(!Stages::open(dir.path()).start("q", "k2").unwrap());
    }
}
