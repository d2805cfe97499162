//! Which op kinds this build of the runtime includes (`cfg(edgekd_op_<name>)`).
//!
//! An op is compiled in when its cargo feature is on (all are, by default) and, for
//! bare-metal targets (`*-none-*`: the firmware), when it is listed in `EDGEKD_OPS`
//! (comma-separated feature names, e.g. `conv2d,fully-connected`) if that variable is
//! set. `edgekd bench` sets it from the embedded model's ops, so the firmware links only
//! the kernels the model runs. A model with an op that was compiled out fails
//! `Model::parse` with `Error::UnsupportedOp`.
//!
//! The variable only narrows bare-metal builds, so a stray `EDGEKD_OPS` in a shell can
//! never strip ops from the host tools (or from the host-side parser the firmware's own
//! build script runs).

use std::env;

/// Cargo feature names of the gated ops (Reshape moves no data and is always in).
const OPS: &[&str] = &[
    "fully-connected",
    "conv2d",
    "depthwise-conv2d",
    "max-pool2d",
    "avg-pool2d",
    "global-avg-pool",
    "add",
    "softmax",
];

fn main() {
    println!("cargo::rerun-if-env-changed=EDGEKD_OPS");
    let target = env::var("TARGET").unwrap_or_default();
    let bare_metal = target.contains("-none");
    let list = env::var("EDGEKD_OPS").ok().filter(|_| bare_metal);
    if let Some(list) = &list {
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !OPS.contains(&name) && name != "reshape" {
                println!(
                    "cargo::error=EDGEKD_OPS names an unknown op `{name}`; known: reshape, {}",
                    OPS.join(", ")
                );
            }
        }
    }
    println!("cargo::rustc-check-cfg=cfg(edgekd_op_subset)");
    let mut all = true;
    for op in OPS {
        let cfg = format!("edgekd_op_{}", op.replace('-', "_"));
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        let feature = format!("CARGO_FEATURE_{}", op.to_uppercase().replace('-', "_"));
        let listed = list
            .as_deref()
            .is_none_or(|l| l.split(',').any(|n| n.trim() == *op));
        if env::var_os(feature).is_some() && listed {
            println!("cargo::rustc-cfg={cfg}");
        } else {
            all = false;
        }
    }
    if !all {
        // Some ops are compiled out: code only they use is dead (allowed, not warned).
        println!("cargo::rustc-cfg=edgekd_op_subset");
    }
}
