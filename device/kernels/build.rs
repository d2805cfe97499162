//! Enables the Cortex-M DSP kernels (`cfg(edgekd_dsp)`) on cores with the DSP extension.
//!
//! `cfg(target_feature = "dsp")` would be the natural switch, but `dsp` is an unstable
//! target feature: stable rustc never sets it in `cfg`, even for ARMv7E-M. So decide from
//! the target instead: every ARMv7E-M core (`thumbv7em-*`: M4, M7) has the extension;
//! ARMv8-M Mainline (`thumbv8m.main-*`) has it only for the cores that implement it
//! (M33, M35P, M55, M85), named with `-C target-cpu` or `-C target-feature=+dsp`.
//!
//! Also reads `EDGEKD_FALLBACK` ([`fallback_knob`]), `EDGEKD_MAX_COLS` ([`columns_knob`]),
//! `EDGEKD_OPS` ([`op_knobs`]), `EDGEKD_CHANNEL_TABLE` ([`channel_table_knob`]),
//! `EDGEKD_CONV_GENERAL` ([`conv_general_knob`]), `EDGEKD_FC_PLAIN` ([`fc_plain_knob`]),
//! and `EDGEKD_KERNELS` with the opt-level ([`size_knob`]).

use std::env;

fn main() {
    fallback_knob();
    columns_knob();
    let small_kernels = size_knob();
    let (depthwise, conv) = op_knobs();
    println!("cargo::rustc-check-cfg=cfg(edgekd_dsp)");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let target = env::var("TARGET").unwrap_or_default();
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let flags: Vec<&str> = flags.split('\x1f').collect();
    let dsp_cpu = ["cortex-m33", "cortex-m35p", "cortex-m55", "cortex-m85"];
    let mut cpu_dsp = false;
    let mut feature_dsp = None;
    for (i, f) in flags.iter().enumerate() {
        let joined = if *f == "-C" {
            flags.get(i + 1).copied().unwrap_or("")
        } else {
            f
        };
        let joined = joined.trim_start_matches("-C");
        if let Some(cpu) = joined.strip_prefix("target-cpu=") {
            cpu_dsp = dsp_cpu.contains(&cpu);
        }
        if let Some(feats) = joined.strip_prefix("target-feature=") {
            for feat in feats.split(',') {
                match feat {
                    "+dsp" => feature_dsp = Some(true),
                    "-dsp" => feature_dsp = Some(false),
                    _ => {}
                }
            }
        }
    }
    let dsp = if target.starts_with("thumbv7em") {
        feature_dsp != Some(false)
    } else if target.starts_with("thumbv8m.main") {
        feature_dsp.unwrap_or(cpu_dsp)
    } else {
        false
    };
    if dsp {
        println!("cargo::rustc-cfg=edgekd_dsp");
    }
    channel_table_knob(dsp, small_kernels, depthwise, conv);
    conv_general_knob(dsp, small_kernels);
    fc_plain_knob(dsp, small_kernels);
}

/// `EDGEKD_CONV_GENERAL=0` leaves the conv kernel's general im2col loop out
/// (`cfg(edgekd_no_conv_general)`): every conv layer must then run on the dense path
/// (`ConvLayer::runs_dense`: a prepared table and every receptive field a run of the
/// input), and any other fails with `KernelError::UnsupportedParams`. The loop is the
/// kernels' largest piece (tiny_cnn at opt-level 3: 9.3 KB). `edgekd bench`/`flash` set it
/// when every conv layer of the model runs dense (`Op::needs_conv_general`; the
/// firmware's build script checks).
fn conv_general_knob(dsp: bool, small_kernels: bool) {
    fast_only_knob(
        "EDGEKD_CONV_GENERAL",
        "edgekd_no_conv_general",
        "run every conv layer on the general loop",
        dsp,
        small_kernels,
    );
}

/// `EDGEKD_FC_PLAIN=0` leaves out the fully connected rows that widen the filter as
/// they go (`cfg(edgekd_no_fc_plain)`): every fully connected layer on the fast kernel
/// must then bring its prepared table (`FcLayer::with_wide_weights`), and one without
/// fails with `KernelError::UnsupportedParams` (tiny_cnn at "z" with the fast kernels:
/// 1.7 KB). `edgekd bench`/`flash` set it when every such layer of the model has a
/// table (`Op::needs_fc_plain`; the firmware's build script checks).
fn fc_plain_knob(dsp: bool, small_kernels: bool) {
    fast_only_knob(
        "EDGEKD_FC_PLAIN",
        "edgekd_no_fc_plain",
        "read no prepared tables",
        dsp,
        small_kernels,
    );
}

/// A `0`/`1` variable that, at `0`, sets `cfg` to leave out code the fast kernels need
/// only for layers off their fast paths: applied to bare-metal DSP builds with the fast
/// kernels, refused with the small ones (which `small_reason`), ignored on cores
/// without DSP, which have no fast paths.
fn fast_only_knob(var: &str, cfg: &str, small_reason: &str, dsp: bool, small_kernels: bool) {
    println!("cargo::rustc-check-cfg=cfg({cfg})");
    println!("cargo::rerun-if-env-changed={var}");
    let bare_metal = env::var("TARGET").unwrap_or_default().contains("-none");
    match env::var(var).as_deref() {
        Ok("0") if bare_metal && dsp && !small_kernels => println!("cargo::rustc-cfg={cfg}"),
        Ok("0") if bare_metal && dsp => println!(
            "cargo::error={var}=0 needs the fast kernels: the small ones \
             (EDGEKD_KERNELS=small, the default at opt-level s/z) {small_reason}"
        ),
        Ok("0" | "1") | Err(_) => {}
        Ok(other) => println!("cargo::error={var} must be 0 or 1, not `{other}`"),
    }
}

/// `EDGEKD_CHANNEL_TABLE=0` leaves the DSP kernels' channel table (320 bytes of every
/// interpreter's RAM) out of `Scratch` (`cfg(edgekd_no_channel_table)`): conv layers
/// then read their channels only from their prepared tables (`conv2d_wide_weights`,
/// `ConvLayer::with_wide_weights`), and a conv layer without one runs the reference
/// kernel. `edgekd bench`/`flash` set it when every conv layer of the model has a table
/// (the firmware's build script checks); depthwise layers and the small kernels
/// (which read no tables) need the table, so it is refused there. Bare-metal DSP
/// targets only; elsewhere there is no such table.
fn channel_table_knob(dsp: bool, small_kernels: bool, depthwise: bool, conv: bool) {
    println!("cargo::rustc-check-cfg=cfg(edgekd_no_channel_table)");
    println!("cargo::rerun-if-env-changed=EDGEKD_CHANNEL_TABLE");
    let bare_metal = env::var("TARGET").unwrap_or_default().contains("-none");
    match env::var("EDGEKD_CHANNEL_TABLE").as_deref() {
        Ok("0") if bare_metal && dsp => {
            if depthwise {
                println!(
                    "cargo::error=EDGEKD_CHANNEL_TABLE=0 leaves out the channel table the \
                     depthwise kernel needs: unset it for models with depthwise layers"
                );
            } else if small_kernels && conv {
                println!(
                    "cargo::error=EDGEKD_CHANNEL_TABLE=0 needs the fast kernels: the small \
                     ones (EDGEKD_KERNELS=small, the default at opt-level s/z) prepare \
                     every conv layer's channels in the table"
                );
            } else {
                println!("cargo::rustc-cfg=edgekd_no_channel_table");
            }
        }
        Ok("0" | "1") | Err(_) => {}
        Ok(other) => println!("cargo::error=EDGEKD_CHANNEL_TABLE must be 0 or 1, not `{other}`"),
    }
}

/// `EDGEKD_FALLBACK=0` compiles out the slow fallback paths of conv and fully
/// connected (`cfg(edgekd_no_fallback)`): firmware whose model never takes them (see
/// `conv2d_needs_fallback`; `edgekd bench` and the firmware's build script check) saves
/// their code. Like `EDGEKD_OPS`, it only applies to bare-metal targets, so a stray
/// variable in a shell cannot change the host tools.
fn fallback_knob() {
    println!("cargo::rustc-check-cfg=cfg(edgekd_no_fallback)");
    println!("cargo::rerun-if-env-changed=EDGEKD_FALLBACK");
    let bare_metal = env::var("TARGET").unwrap_or_default().contains("-none");
    match env::var("EDGEKD_FALLBACK").as_deref() {
        Ok("0") if bare_metal => println!("cargo::rustc-cfg=edgekd_no_fallback"),
        Ok("0" | "1") | Err(_) => {}
        Ok(other) => println!("cargo::error=EDGEKD_FALLBACK must be 0 or 1, not `{other}`"),
    }
}

/// `EDGEKD_MAX_COLS=N` sizes the kernels' column buffer (the largest part of every
/// interpreter's RAM) to `N` entries instead of 256: `edgekd bench`/`flash` set it to
/// what the model's conv and fully connected layers need (`Op::scratch_columns`), and
/// the firmware's build script refuses a value too small for its model. A multiple of
/// four in 4..=256; bare-metal targets only, like `EDGEKD_OPS`.
fn columns_knob() {
    println!("cargo::rerun-if-env-changed=EDGEKD_MAX_COLS");
    let bare_metal = env::var("TARGET").unwrap_or_default().contains("-none");
    let columns = match env::var("EDGEKD_MAX_COLS") {
        Ok(v) if bare_metal => match v.parse::<usize>() {
            Ok(n) if (4..=256).contains(&n) && n % 4 == 0 => n,
            _ => {
                println!(
                    "cargo::error=EDGEKD_MAX_COLS must be a multiple of 4 from 4 to 256, not `{v}`"
                );
                256
            }
        },
        _ => 256,
    };
    let out = std::path::PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let code = format!(
        "/// Entries of the column buffer (`EDGEKD_MAX_COLS`, default 256; see `build.rs`).\n\
         pub(crate) const MAX_COLS: usize = {columns};\n"
    );
    if let Err(e) = std::fs::write(out.join("max_cols.rs"), code) {
        println!("cargo::error=cannot write max_cols.rs: {e}");
    }
}

/// `cfg(edgekd_small_kernels)`: the small kernels, without the DSP builds' assembly
/// loops and prepared tables (the fully connected row loop in one copy, not also
/// specialized for layers clamped to the whole int8 range, and so on). They are the
/// default of builds optimized for size (`opt-level` "s" or "z"); `EDGEKD_KERNELS=fast`
/// or `small` chooses either at any opt-level (tiny_cnn on the M4 at "z": 25,452
/// instructions with 7.9 KB of runtime code small, 10,537 with 9.1 KB fast, the general
/// conv loop and the fully connected rows without a table left out).
/// "z" also gets `cfg(edgekd_min_size)`: convolutions then run one pixel per pass.
fn size_knob() -> bool {
    println!("cargo::rustc-check-cfg=cfg(edgekd_small_kernels)");
    println!("cargo::rustc-check-cfg=cfg(edgekd_min_size)");
    println!("cargo::rerun-if-env-changed=EDGEKD_KERNELS");
    let level = env::var("OPT_LEVEL").unwrap_or_default();
    let size_opt = matches!(level.as_str(), "s" | "z");
    let small = match env::var("EDGEKD_KERNELS").as_deref() {
        Ok("small") => true,
        Ok("fast") => false,
        Err(_) => size_opt,
        Ok(other) => {
            println!("cargo::error=EDGEKD_KERNELS must be `fast` or `small`, not `{other}`");
            size_opt
        }
    };
    if small {
        println!("cargo::rustc-cfg=edgekd_small_kernels");
    }
    // "z" asks for the least code: see `PAIR_PIXELS`.
    if level == "z" {
        println!("cargo::rustc-cfg=edgekd_min_size");
    }
    small
}

/// `cfg(edgekd_depthwise)` and `cfg(edgekd_conv2d)`: the depthwise and conv kernels,
/// and with them the channel table in `Scratch` (320 bytes of every interpreter's RAM on
/// DSP cores, where fully connected layers do without it), are compiled when their
/// cargo feature is on, unless a bare-metal build's `EDGEKD_OPS` (the list
/// `edgekd-runtime` narrows its ops by) leaves the op out. The self-test, which checks
/// every kernel, keeps them.
fn op_knobs() -> (bool, bool) {
    (
        op_knob("DEPTHWISE_CONV2D", "depthwise-conv2d", "edgekd_depthwise"),
        op_knob("CONV2D", "conv2d", "edgekd_conv2d"),
    )
}

/// Whether the kernel is compiled.
fn op_knob(feature: &str, op: &str, cfg: &str) -> bool {
    println!("cargo::rustc-check-cfg=cfg({cfg})");
    println!("cargo::rerun-if-env-changed=EDGEKD_OPS");
    let feature = env::var_os(format!("CARGO_FEATURE_{feature}")).is_some();
    let selftest = env::var_os("CARGO_FEATURE_SELFTEST").is_some();
    let bare_metal = env::var("TARGET").unwrap_or_default().contains("-none");
    let listed = match env::var("EDGEKD_OPS") {
        Ok(list) if bare_metal => list.split(',').any(|o| o.trim() == op),
        _ => true,
    };
    let compiled = feature && (listed || selftest);
    if compiled {
        println!("cargo::rustc-cfg={cfg}");
    }
    compiled
}
