//! edgekd-runtime (int8) vs edgekd-tract (int8) vs tract on the float model, batch 1,
//! on the reference models. Ends by printing a ratio table from this run's estimates.

use criterion::{black_box, Criterion};
use edgekd_benches::{ratio_table, Case, MODELS, RUNTIMES};
use edgekd_runtime::Interpreter;
use std::path::PathBuf;
use tract_core::internal::*;

fn criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

fn main() {
    let dir = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();
    for name in MODELS {
        let case = Case::load(name);
        let mut g = c.benchmark_group(name);

        let model = case.model();
        let mut arena = vec![0u8; model.arena_size()];
        let mut interp = Interpreter::new(model, &mut arena).unwrap();
        g.bench_function(RUNTIMES[0], |b| {
            b.iter(|| {
                interp
                    .input_mut(0)
                    .unwrap()
                    .copy_from_slice(black_box(&case.input));
                interp.invoke().unwrap();
                black_box(interp.output(0).unwrap()[0])
            })
        });

        let mut tract = case.tract_int8();
        g.bench_function(RUNTIMES[1], |b| {
            b.iter(|| black_box(tract.run(&[black_box(&case.input)]).unwrap()))
        });

        let (float, input) = case.tract_f32();
        let mut state = SimpleState::new(&float).unwrap();
        g.bench_function(RUNTIMES[2], |b| {
            b.iter(|| black_box(state.run(tvec!(input.clone())).unwrap()))
        });
        g.finish();
    }
    c.final_summary();
    println!("\n{}", ratio_table(&dir));
}
