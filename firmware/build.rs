//! Picks the board's memory map, embeds the model and its golden vectors, sizes the
//! arena, and refuses to build firmware that cannot fit the board.
//!
//! Inputs (environment):
//! - `EDGEKD_MODEL`: the `.ekd` file (default `../models/reference/tiny_cnn.ekd`);
//!   relative paths are relative to this crate.
//! - `EDGEKD_INPUT` / `EDGEKD_EXPECTED`: int8 `.npy` matrices, one sample per row
//!   (default: `<model stem>.input.npy` / `<model stem>.expected.npy` beside the model).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// What the firmware and its QEMU runner need to know about a board beyond its
/// memory map (which lives in `boards/<name>/memory.x`).
struct Board {
    name: &'static str,
    /// The one target triple this board's core runs.
    target: &'static str,
    qemu_machine: &'static str,
    qemu_cpu: Option<&'static str>,
    /// SysTick's processor-clock frequency in QEMU's model of the board.
    systick_hz: u64,
    /// `-icount shift=N`: each instruction advances virtual time by 2^N ns. Chosen so a
    /// SysTick tick is under half an instruction (exact rounding) while the 24-bit
    /// counter still wraps only every few million instructions.
    icount_shift: u32,
}

const BOARDS: &[Board] = &[
    Board {
        name: "mps2-an386",
        target: "thumbv7em-none-eabihf",
        qemu_machine: "mps2-an386",
        qemu_cpu: Some("cortex-m4"),
        systick_hz: 25_000_000,
        icount_shift: 7,
    },
    Board {
        name: "mps2-an500",
        target: "thumbv7em-none-eabihf",
        qemu_machine: "mps2-an500",
        qemu_cpu: Some("cortex-m7"),
        systick_hz: 25_000_000,
        icount_shift: 7,
    },
    Board {
        name: "netduinoplus2",
        target: "thumbv7em-none-eabihf",
        qemu_machine: "netduinoplus2",
        qemu_cpu: None,
        systick_hz: 168_000_000,
        icount_shift: 4,
    },
    Board {
        name: "mps2-an505",
        target: "thumbv8m.main-none-eabihf",
        qemu_machine: "mps2-an505",
        qemu_cpu: None,
        systick_hz: 20_000_000,
        icount_shift: 7,
    },
    Board {
        name: "microbit",
        target: "thumbv6m-none-eabi",
        qemu_machine: "microbit",
        qemu_cpu: None,
        systick_hz: 16_000_000,
        icount_shift: 8,
    },
];

/// RAM kept free for the stack beyond the arena (the measured high-water mark of this
/// firmware is printed at the end of every run; keep this above it). The highest
/// measured is 6.0 KB (ds_cnn, 10 ops, qemu-m4): the interpreter, with its decoded op
/// table and the kernels' scratch, lives on the stack.
const STACK_RESERVE: usize = 8 * 1024;
/// Flash kept for code and constants other than the model and the golden vectors.
const CODE_RESERVE: usize = 24 * 1024;

fn main() {
    if let Err(msg) = run() {
        eprintln!("\nedgekd-firmware build error: {msg}\n");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let target = env::var("TARGET").map_err(|e| e.to_string())?;

    println!("cargo::rustc-check-cfg=cfg(armv6m)");
    if target.starts_with("thumbv6m") {
        // No DWT cycle counter and no atomic read-modify-write on ARMv6-M.
        println!("cargo:rustc-cfg=armv6m");
    }
    let board = select_board()?;
    if board.target != target {
        return Err(format!(
            "board {} runs {} code, but this build targets {target}: add `--target {}`",
            board.name, board.target, board.target
        ));
    }
    let memory_x = manifest.join("boards").join(board.name).join("memory.x");
    println!("cargo:rerun-if-changed={}", memory_x.display());
    let map = fs::read_to_string(&memory_x)
        .map_err(|e| format!("cannot read {}: {e}", memory_x.display()))?;
    let flash = region_len(&map, "FLASH").ok_or_else(|| no_region(&memory_x, "FLASH"))?;
    let ram = region_len(&map, "RAM").ok_or_else(|| no_region(&memory_x, "RAM"))?;
    fs::write(out.join("memory.x"), &map).map_err(|e| e.to_string())?;
    println!("cargo:rustc-link-search={}", out.display());

    for var in [
        "EDGEKD_MODEL",
        "EDGEKD_INPUT",
        "EDGEKD_EXPECTED",
        "EDGEKD_OPS",
        "EDGEKD_FALLBACK",
        "EDGEKD_MAX_COLS",
        "EDGEKD_CHANNEL_TABLE",
        "EDGEKD_CONV_GENERAL",
        "EDGEKD_FC_PLAIN",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let model_path = env::var_os("EDGEKD_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../models/reference/tiny_cnn.ekd"));
    let model_path = manifest.join(model_path);
    let sibling = |suffix: &str| {
        let stem = model_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        model_path.with_file_name(format!("{stem}.{suffix}.npy"))
    };
    let input_path = env::var_os("EDGEKD_INPUT")
        .map(|p| manifest.join(p))
        .unwrap_or_else(|| sibling("input"));
    let expected_path = env::var_os("EDGEKD_EXPECTED")
        .map(|p| manifest.join(p))
        .unwrap_or_else(|| sibling("expected"));
    for p in [&model_path, &input_path, &expected_path] {
        println!("cargo:rerun-if-changed={}", p.display());
    }

    let bytes = fs::read(&model_path).map_err(|e| {
        format!(
            "cannot read the model {} ({e}); set EDGEKD_MODEL or run `edgekd reference`",
            model_path.display()
        )
    })?;
    let facts = model_facts(&bytes).map_err(|e| format!("{}: {e}", model_path.display()))?;
    check_ops(&facts, &model_path)?;
    check_fallback(&facts, &model_path)?;
    check_columns(&facts, &model_path)?;
    check_channel_table(&facts, &model_path)?;
    check_fast_paths(&facts, &model_path)?;
    let inputs = read_i8_npy(&input_path)?;
    let expected = read_i8_npy(&expected_path)?;
    if inputs.cols != facts.input_len {
        return Err(format!(
            "{} has {} values per sample but the model's input has {}",
            input_path.display(),
            inputs.cols,
            facts.input_len
        ));
    }
    if expected.cols != facts.output_len || expected.rows != inputs.rows {
        return Err(format!(
            "{} is {}x{} but {} samples of the model's {} outputs are needed",
            expected_path.display(),
            expected.rows,
            expected.cols,
            inputs.rows,
            facts.output_len
        ));
    }
    if inputs.rows == 0 {
        return Err(format!("{} holds no samples", input_path.display()));
    }

    let ram_needed = facts.arena + STACK_RESERVE;
    if ram_needed > ram {
        return Err(format!(
            "the model {} does not fit board {}: it needs {} bytes of arena + {} bytes of \
             stack reserve = {} bytes of RAM, but the board has {} bytes ({})",
            model_path.display(),
            board.name,
            facts.arena,
            STACK_RESERVE,
            ram_needed,
            ram,
            memory_x.display()
        ));
    }
    // Counted whether or not this build's kernels read them (the linker drops them
    // from builds that do not).
    let wide_bytes = 2 * facts.wide_entries;
    let flash_needed =
        bytes.len() + inputs.data.len() + expected.data.len() + wide_bytes + CODE_RESERVE;
    if flash_needed > flash {
        return Err(format!(
            "the model {} does not fit board {}: model {} bytes + golden vectors {} bytes + \
             prepared tables {wide_bytes} bytes + {} bytes for code = {} bytes of flash, \
             but the board has {} bytes ({})",
            model_path.display(),
            board.name,
            bytes.len(),
            inputs.data.len() + expected.data.len(),
            CODE_RESERVE,
            flash_needed,
            flash,
            memory_x.display()
        ));
    }

    fs::write(out.join("model.ekd"), &bytes).map_err(|e| e.to_string())?;
    let name = model_path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let src = generated_source(board, &name, &bytes, &facts, &inputs, &expected);
    fs::write(out.join("generated.rs"), src).map_err(|e| e.to_string())?;
    Ok(())
}

/// With `EDGEKD_OPS` set, the runtime compiles in only the listed ops
/// (`device/runtime/build.rs`): refuse to build firmware whose model needs another one
/// (it would fail `Model::parse` with `UnsupportedOp` on the device). The self-test
/// runs no model and skips the check.
fn check_ops(facts: &ModelFacts, model_path: &Path) -> Result<(), String> {
    let Ok(list) = env::var("EDGEKD_OPS") else {
        return Ok(());
    };
    if env::var_os("CARGO_FEATURE_SELFTEST").is_some() {
        return Ok(());
    }
    let listed: Vec<&str> = list.split(',').map(str::trim).collect();
    let missing: Vec<&str> = facts
        .ops_used
        .iter()
        .map(String::as_str)
        .filter(|op| *op != "reshape" && !listed.contains(op))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the model {} uses {} but EDGEKD_OPS={list:?} compiles only those ops into the \
         runtime; set EDGEKD_OPS={} (the model's ops) or unset it (all ops)",
        model_path.display(),
        missing.join(", "),
        facts.ops_used.join(",")
    ))
}

/// `EDGEKD_FALLBACK=0` compiles the kernels' slow fallbacks out
/// (`device/kernels/build.rs`): refuse it for a model with a layer that takes one, and
/// for the self-test, which exercises them.
fn check_fallback(facts: &ModelFacts, model_path: &Path) -> Result<(), String> {
    if env::var("EDGEKD_FALLBACK").as_deref() != Ok("0") {
        return Ok(());
    }
    if env::var_os("CARGO_FEATURE_SELFTEST").is_some() {
        return Err(
            "the self-test compares the kernels' fallbacks too: unset EDGEKD_FALLBACK".into(),
        );
    }
    if facts.needs_fallback {
        return Err(format!(
            "the model {} has a layer that runs a kernel's fallback (a column over 256 \
             entries or a requantization shift outside -23..0), but EDGEKD_FALLBACK=0 \
             compiles the fallbacks out; unset it",
            model_path.display()
        ));
    }
    Ok(())
}

/// `EDGEKD_MAX_COLS=N` sizes the kernels' column buffer (`device/kernels/build.rs`):
/// refuse a size smaller than the model's layers need (they would fall back to the slow
/// kernels, or fail without them) and any size for the self-test, whose random layers
/// take the whole default buffer.
fn check_columns(facts: &ModelFacts, model_path: &Path) -> Result<(), String> {
    let Ok(value) = env::var("EDGEKD_MAX_COLS") else {
        return Ok(());
    };
    if env::var_os("CARGO_FEATURE_SELFTEST").is_some() {
        return Err("the self-test needs the default column buffer: unset EDGEKD_MAX_COLS".into());
    }
    // The kernels' build script reports a malformed value.
    let Ok(columns) = value.parse::<usize>() else {
        return Ok(());
    };
    if columns < facts.scratch_columns {
        return Err(format!(
            "the model {} needs a column buffer of {} entries, but EDGEKD_MAX_COLS={columns}; \
             set EDGEKD_MAX_COLS={} or unset it (256)",
            model_path.display(),
            facts.scratch_columns,
            facts.scratch_columns
        ));
    }
    Ok(())
}

/// `EDGEKD_CHANNEL_TABLE=0` leaves the DSP kernels' RAM channel table out (see the
/// kernels' build script): refuse it for a model with an op that needs the table (its
/// conv layers would run the reference kernel, or fail without it) and for the
/// self-test. The kernels refuse it for depthwise and size-optimized builds themselves.
fn check_channel_table(facts: &ModelFacts, model_path: &Path) -> Result<(), String> {
    if env::var("EDGEKD_CHANNEL_TABLE").as_deref() != Ok("0") {
        return Ok(());
    }
    if env::var_os("CARGO_FEATURE_SELFTEST").is_some() {
        return Err("the self-test needs the channel table: unset EDGEKD_CHANNEL_TABLE".into());
    }
    if let Some(index) = facts.channel_table_op {
        return Err(format!(
            "op {index} of the model {} prepares its channels in the kernels' channel table \
             (a depthwise layer, or a conv layer without a prepared table), but \
             EDGEKD_CHANNEL_TABLE=0 leaves it out: unset EDGEKD_CHANNEL_TABLE",
            model_path.display()
        ));
    }
    Ok(())
}

/// `EDGEKD_CONV_GENERAL=0` and `EDGEKD_FC_PLAIN=0` leave out the conv kernel's general
/// loop and the fully connected kernel's rows without a prepared table (see the
/// kernels' build script): refuse each for a model with an op that runs there (it would
/// fail on the device) and for the self-test. The kernels refuse them with the small
/// kernels themselves.
fn check_fast_paths(facts: &ModelFacts, model_path: &Path) -> Result<(), String> {
    let knobs = [
        (
            "EDGEKD_CONV_GENERAL",
            facts.conv_general_op,
            "a conv layer that runs on the kernel's general loop (2-D windows, padding \
             across rows, an odd channel count or no prepared table)",
        ),
        (
            "EDGEKD_FC_PLAIN",
            facts.fc_plain_op,
            "a fully connected layer without a prepared table (a channel outside the \
             single-step requantization)",
        ),
    ];
    for (var, op, what) in knobs {
        if env::var(var).as_deref() != Ok("0") {
            continue;
        }
        if env::var_os("CARGO_FEATURE_SELFTEST").is_some() {
            return Err(format!("the self-test runs every kernel path: unset {var}"));
        }
        if let Some(index) = op {
            return Err(format!(
                "op {index} of the model {} is {what}, but {var}=0 leaves that code out: \
                 unset it",
                model_path.display()
            ));
        }
    }
    Ok(())
}

fn select_board() -> Result<&'static Board, String> {
    let chosen: Vec<&Board> = BOARDS
        .iter()
        .filter(|b| {
            let var = format!("CARGO_FEATURE_{}", b.name.to_uppercase().replace('-', "_"));
            env::var_os(var).is_some()
        })
        .collect();
    match chosen.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("no board feature selected; pick one of: {}", board_names())),
        many => Err(format!(
            "pick exactly one board feature, got {} (use --no-default-features --features <board>); boards: {}",
            many.iter().map(|b| b.name).collect::<Vec<_>>().join(", "),
            board_names()
        )),
    }
}

fn board_names() -> String {
    BOARDS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
}

fn no_region(path: &Path, region: &str) -> String {
    format!("{} declares no {region} region", path.display())
}

/// `LENGTH` of a `MEMORY` region in a linker script (`4M`, `128K`, `0x4000`, `16384`).
fn region_len(script: &str, region: &str) -> Option<usize> {
    let line = script
        .lines()
        .find(|l| l.trim_start().starts_with(region) && l.contains("LENGTH"))?;
    let value = line.split("LENGTH").nth(1)?.trim_start_matches([' ', '=']);
    let token: String = value
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let (digits, unit) = match token.chars().last()? {
        'K' | 'k' => (&token[..token.len() - 1], 1024),
        'M' | 'm' => (&token[..token.len() - 1], 1024 * 1024),
        _ => (token.as_str(), 1),
    };
    let n = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => usize::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    n.checked_mul(unit)
}

struct ModelFacts {
    arena: usize,
    ops: usize,
    /// The op kinds the model uses, as runtime feature names (`conv2d`, ...).
    ops_used: Vec<String>,
    /// Whether an op takes its kernel's slow fallback (`Op::needs_fallback`).
    needs_fallback: bool,
    /// The kernels' column-buffer entries the model needs (`Op::scratch_columns`).
    scratch_columns: usize,
    /// Multiply-accumulates per op (`Op::macs`).
    op_macs: Vec<u64>,
    input_len: usize,
    output_len: usize,
    /// Entries of the prepared tables (`fc_wide_weights`, `conv2d_wide_weights`,
    /// `add_tables`) of the ops DSP kernels read them for (`Op::wide_weights`; the
    /// generated program holds the tables themselves).
    wide_entries: usize,
    /// The first op whose channels DSP builds prepare in RAM (`Op::needs_channel_table`).
    channel_table_op: Option<usize>,
    /// The first conv op DSP builds run on the general loop (`Op::needs_conv_general`).
    conv_general_op: Option<usize>,
    /// The first fully connected op DSP builds run without a table (`Op::needs_fc_plain`).
    fc_plain_op: Option<usize>,
    /// The model's ops decoded here, as Rust that rebuilds them on the device
    /// (`edgekd_runtime::codegen`).
    program: String,
}

/// Parses the model with the same runtime the firmware runs, so a model the firmware
/// would reject fails the build instead.
fn model_facts(bytes: &[u8]) -> Result<ModelFacts, String> {
    // The parser wants the buffer 16-byte aligned, as it will be in flash.
    let mut words = vec![0u128; bytes.len().div_ceil(16)];
    let aligned: &mut [u8] = bytemuck_bytes(&mut words);
    aligned[..bytes.len()].copy_from_slice(bytes);
    let model = edgekd_runtime::Model::parse(&aligned[..bytes.len()])
        .map_err(|e| format!("not a valid .ekd model: {e}"))?;
    let tensor_len = |t: Result<edgekd_runtime::Tensor<'_>, edgekd_runtime::Error>| {
        t.map(|t| t.elements()).map_err(|e| e.to_string())
    };
    if model.input_count() != 1 || model.output_count() != 1 {
        return Err(format!(
            "the firmware runs single-input, single-output models; this one has {} inputs and {} outputs",
            model.input_count(),
            model.output_count()
        ));
    }
    let (mut ops_used, mut needs_fallback): (Vec<String>, bool) = (Vec::new(), false);
    let mut wide_entries = 0;
    let mut scratch_columns = 0;
    let mut op_macs = Vec::new();
    let mut channel_table_op = None;
    let mut conv_general_op = None;
    let mut fc_plain_op = None;
    for (index, op) in model.ops().enumerate() {
        let op = op.map_err(|e| e.to_string())?;
        let fallback = op.needs_fallback(&model).map_err(|e| e.to_string())?;
        needs_fallback |= fallback;
        op_macs.push(op.macs(&model).map_err(|e| e.to_string())?);
        scratch_columns =
            scratch_columns.max(op.scratch_columns(&model).map_err(|e| e.to_string())?);
        if op.needs_channel_table(&model).map_err(|e| e.to_string())? {
            channel_table_op.get_or_insert(index);
        }
        if op.needs_conv_general(&model).map_err(|e| e.to_string())? {
            conv_general_op.get_or_insert(index);
        }
        if op.needs_fc_plain(&model).map_err(|e| e.to_string())? {
            fc_plain_op.get_or_insert(index);
        }
        if let Some(table) = op.wide_weights(&model).map_err(|e| e.to_string())? {
            wide_entries += table.count();
        }
        let name = op.code.feature().to_string();
        if !ops_used.contains(&name) {
            ops_used.push(name);
        }
    }
    Ok(ModelFacts {
        arena: model.arena_size(),
        ops: model.op_count(),
        ops_used,
        needs_fallback,
        scratch_columns,
        op_macs,
        input_len: tensor_len(model.input(0))?,
        output_len: tensor_len(model.output(0))?,
        wide_entries,
        channel_table_op,
        conv_general_op,
        fc_plain_op,
        program: edgekd_runtime::codegen::program_source(&model, "program")
            .map_err(|e| e.to_string())?,
    })
}

fn bytemuck_bytes(words: &mut [u128]) -> &mut [u8] {
    let len = words.len() * 16;
    // SAFETY: u128 has no padding and every byte pattern is a valid u8; the slice covers
    // exactly the words' memory and borrows them mutably for its lifetime.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) }
}

struct NpyI8 {
    rows: usize,
    cols: usize,
    data: Vec<i8>,
}

/// Reads a C-order int8 `.npy` (format 1.0-3.0) as a matrix; N-D arrays flatten after
/// axis 0. Small enough to parse here rather than pull a parser into the build.
fn read_i8_npy(path: &Path) -> Result<NpyI8, String> {
    let fail = |why: &str| format!("{}: {why}", path.display());
    let bytes = fs::read(path).map_err(|e| {
        format!(
            "cannot read {} ({e}); write golden vectors with `edgekd reference`, or point \
             EDGEKD_INPUT / EDGEKD_EXPECTED at int8 .npy files (`edgekd infer` makes the expected ones)",
            path.display()
        )
    })?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(fail("not a .npy file"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(fail(&format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| fail("truncated header"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        Some(header[at..].trim_start_matches([' ', ':']))
    };
    let descr = field("descr").ok_or_else(|| fail("no dtype"))?;
    if !(descr.starts_with("'|i1'") || descr.starts_with("'<i1'")) {
        return Err(fail("dtype is not int8"));
    }
    if !field("fortran_order").is_some_and(|v| v.starts_with("False")) {
        return Err(fail("Fortran-order arrays are not supported"));
    }
    let shape = field("shape").ok_or_else(|| fail("no shape"))?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| fail("bad shape"))?;
    let dims = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| fail("bad shape")))
        .collect::<Result<Vec<_>, _>>()?;
    let (rows, cols) = match dims.as_slice() {
        [] => return Err(fail("a scalar is not a batch of samples")),
        [n] => (1, *n),
        [n, rest @ ..] => (*n, rest.iter().product()),
    };
    let body = &bytes[start + header_len..];
    if body.len() != rows * cols {
        return Err(fail(&format!(
            "shape {dims:?} needs {} bytes of data, the file has {}",
            rows * cols,
            body.len()
        )));
    }
    Ok(NpyI8 {
        rows,
        cols,
        data: body.iter().map(|&b| b as i8).collect(),
    })
}

fn generated_source(
    board: &Board,
    model_name: &str,
    bytes: &[u8],
    facts: &ModelFacts,
    inputs: &NpyI8,
    expected: &NpyI8,
) -> String {
    let cpu = board
        .qemu_cpu
        .map(|c| format!(" cpu={c}"))
        .unwrap_or_default();
    let marker = format!(
        "EDGEKD_QEMU machine={}{cpu} shift={} board={}\n",
        board.qemu_machine, board.icount_shift, board.name
    );
    let mut s = String::new();
    let _ = writeln!(
        s,
        "// @generated by build.rs: board constants, the model and its golden vectors."
    );
    let _ = writeln!(s, "/// The board this firmware was built for.");
    let _ = writeln!(s, "pub const BOARD: &str = {:?};", board.name);
    let _ = writeln!(
        s,
        "/// SysTick processor-clock frequency in QEMU's model of the board."
    );
    let _ = writeln!(s, "pub const SYSTICK_HZ: u64 = {};", board.systick_hz);
    let _ = writeln!(s, "/// The `-icount shift` the runner uses for this board.");
    let _ = writeln!(s, "pub const ICOUNT_SHIFT: u32 = {};", board.icount_shift);
    let _ = writeln!(
        s,
        "/// Read by qemu-run.sh and `edgekd bench` to start the right QEMU machine."
    );
    let _ = writeln!(s, "#[used]");
    let _ = writeln!(
        s,
        "pub static QEMU_MARKER: [u8; {}] = *b{:?};",
        marker.len(),
        marker
    );
    let _ = writeln!(s, "/// File name of the embedded model.");
    let _ = writeln!(s, "pub const MODEL_NAME: &str = {model_name:?};");
    let _ = writeln!(s, "/// Arena bytes the model's memory plan needs.");
    let _ = writeln!(s, "pub const ARENA_SIZE: usize = {};", facts.arena);
    let _ = writeln!(s, "/// Ops in the model.");
    let _ = writeln!(s, "pub const OP_COUNT: usize = {};", facts.ops);
    let _ = writeln!(
        s,
        "/// Op kinds compiled into the runtime (`EDGEKD_OPS`, or all of them)."
    );
    let ops = env::var("EDGEKD_OPS").unwrap_or_else(|_| "all".into());
    let _ = writeln!(s, "pub const COMPILED_OPS: &str = {ops:?};");
    let _ = writeln!(s, "/// Golden samples.");
    let _ = writeln!(s, "pub const SAMPLES: usize = {};", inputs.rows);
    let _ = writeln!(s, "/// int8 values per input sample.");
    let _ = writeln!(s, "pub const INPUT_LEN: usize = {};", inputs.cols);
    let _ = writeln!(s, "/// int8 values per output.");
    let _ = writeln!(s, "pub const OUTPUT_LEN: usize = {};", expected.cols);
    let _ = writeln!(
        s,
        "/// The model file, 16-byte aligned in flash as the parser requires."
    );
    let _ = writeln!(
        s,
        "pub static MODEL: Aligned16<[u8; {}]> = Aligned16(*include_bytes!(concat!(env!(\"OUT_DIR\"), \"/model.ekd\")));",
        bytes.len()
    );
    let list = |v: &[i8]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let _ = writeln!(
        s,
        "/// Multiply-accumulates per op (`Op::macs`, counted here so the firmware does not\n/// carry the counting code, which only the report needs)."
    );
    let _ = writeln!(
        s,
        "pub static OP_MACS: [u64; {}] = [{}];",
        facts.op_macs.len(),
        facts
            .op_macs
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let _ = writeln!(s, "/// Golden inputs, `SAMPLES` rows of `INPUT_LEN`.");
    let _ = writeln!(
        s,
        "pub static INPUTS: [i8; {}] = [{}];",
        inputs.data.len(),
        list(&inputs.data)
    );
    let _ = writeln!(
        s,
        "/// Expected outputs (the host runtime's), `SAMPLES` rows of `OUTPUT_LEN`."
    );
    let _ = writeln!(
        s,
        "pub static EXPECTED: [i8; {}] = [{}];",
        expected.data.len(),
        list(&expected.data)
    );
    s.push_str(&facts.program);
    s
}
