//! Any bytes: parse them as a model and, if that succeeds, run one inference.
//! The checksum is re-forged first so the fuzzer reaches the structural validation
//! behind it instead of stopping at `BadChecksum`.
#![no_main]

use edgekd_runtime::writer::AlignedBytes;
use edgekd_runtime::{Interpreter, Model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    if bytes.len() >= 16 {
        let crc = edgekd_runtime::format::checksum(&bytes[16..]);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    }
    let buf = AlignedBytes::copy_from(&bytes);
    let Ok(model) = Model::parse(buf.as_bytes()) else { return };
    if model.arena_size() > 1 << 20 {
        return;
    }
    let mut arena = vec![0u8; model.arena_size()];
    let Ok(mut interp) = Interpreter::new(model, &mut arena) else { return };
    if let Ok(input) = interp.input_mut(0) {
        input.iter_mut().enumerate().for_each(|(i, v)| *v = i as i8);
    }
    let _ = interp.invoke();
});
