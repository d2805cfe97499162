//! Every truncation and every single-bit flip of a valid model parses to `Ok` or `Err`,
//! never a panic, and a model that parses also runs without one. Flips are tried both
//! as they come (the checksum catches them) and with the checksum forged, so that the
//! structural validation behind the checksum is exercised too.
#![cfg(feature = "std")]

mod common;
use common::*;
use edgekd_runtime::{Error, Interpreter, Model};

fn parse_and_run(bytes: &[u8]) -> Result<(), Error> {
    let buf = aligned(bytes);
    let model = Model::parse(buf.as_bytes())?;
    let mut arena = vec![0u8; model.arena_size()];
    let mut interp = Interpreter::new(model, &mut arena)?;
    for v in interp.input_mut(0)?.iter_mut() {
        *v = 37;
    }
    interp.invoke()?;
    let _ = interp.output(0)?;
    Ok(())
}

#[test]
fn every_truncation_is_an_error() {
    for (name, bytes, _, _) in REFERENCE {
        for len in 0..bytes.len() {
            assert!(
                parse_and_run(&bytes[..len]).is_err(),
                "{name} truncated to {len} parsed"
            );
        }
        parse_and_run(bytes).unwrap();
    }
}

#[test]
fn every_bit_flip_is_caught_by_the_checksum_or_handled() {
    for (name, bytes, _, _) in REFERENCE {
        let mut b = bytes.to_vec();
        for byte in 0..b.len() {
            // Bytes 6..8 hold the minor version, which a reader accepts by design.
            if (6..8).contains(&byte) {
                continue;
            }
            for bit in 0..8 {
                b[byte] ^= 1 << bit;
                let r = parse_and_run(&b);
                // Flips inside the checksummed body must be caught by the checksum;
                // flips in magic/version/length/CRC fields fail their own checks.
                assert!(r.is_err(), "{name}: flip of byte {byte} bit {bit} accepted");
                b[byte] ^= 1 << bit;
            }
        }
    }
}

#[test]
fn every_bit_flip_with_forged_checksum_is_ok_or_err() {
    let mut accepted = 0usize;
    let mut refused = 0usize;
    for (_, bytes, _, _) in REFERENCE {
        let mut b = bytes.to_vec();
        for byte in 16..b.len() {
            for bit in 0..8 {
                b[byte] ^= 1 << bit;
                fix_checksum(&mut b);
                match parse_and_run(&b) {
                    Ok(()) => accepted += 1,
                    Err(_) => refused += 1,
                }
                b[byte] ^= 1 << bit;
            }
        }
        fix_checksum(&mut b);
    }
    // Weight bits are free to flip; structural bits mostly are not.
    assert!(
        accepted > 0 && refused > 0,
        "accepted {accepted}, refused {refused}"
    );
}
