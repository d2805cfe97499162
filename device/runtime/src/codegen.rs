//! Writes a model's decoded ops as Rust source that rebuilds its [`Program`](crate::Program) on the
//! device ([`program_source`]), for firmware that should link neither the format
//! parser nor the op decoder.
//!
//! The source holds each op's [`OpParts`] as a literal in a `static` table, its
//! constants (filters, biases, requantization) as `static` arrays, and a `build()` that
//! passes every op through
//! [`Step::new`](crate::Step::new): the kernels' constructors still check every layer on
//! the device, so source edited by hand or gone stale can fail there, but cannot make a
//! kernel read or write out of bounds.

use crate::format::{Model, OpParams};
use crate::program::{OpParts, Step};
use crate::Error;
use edgekd_kernels::Requant;
use std::collections::HashMap;
use std::fmt::{Display, Write as _};
use std::string::{String, ToString};
use std::vec::Vec;

/// Rust source of a module named `module` that rebuilds `model`'s [`Program`](crate::Program):
/// `OPS` (its op count), `ARENA_SIZE`, and
/// `build() -> Result<Program<'static, OPS>, edgekd_runtime::Error>`.
///
/// The module refers to the runtime as `edgekd_runtime`, so the crate that includes it
/// must depend on it under that name.
///
/// Errors: the model's own, as [`Program::decode`](crate::Program::decode) reports them (a model that would
/// not run is not written out).
pub fn program_source(model: &Model<'_>, module: &str) -> Result<String, Error> {
    let input = model.input(0)?.range();
    let output = model.output(0)?.range();
    let mut data = Statics::default();
    let mut steps = String::new();
    let mut tables = String::new();
    let mut table_count = 0;
    for (index, op) in model.ops().enumerate() {
        let op = op?;
        if let Some(table) = op.wide_weights(model)? {
            let values: Vec<i16> = table.collect();
            let name = format!("OP{index}_TABLE");
            data.table(&name, &values);
            let _ = writeln!(tables, "        ({index}, &{name}.0),");
            table_count += 1;
        }
        let parts = OpParts::decode(model, &op)?;
        // Checked as the device will check it.
        Step::new(parts.clone())?;
        let literal = op_parts(&parts, index, &mut data);
        let _ = writeln!(steps, "    // op {index}: {}", parts.code().name());
        let _ = writeln!(steps, "    {literal},");
    }
    let mut src = String::new();
    let _ = writeln!(
        src,
        "/// The model's ops, decoded at build time (`edgekd_runtime::codegen`).
#[allow(clippy::all, dead_code)]
pub mod {module} {{
    use edgekd_runtime::format::OpParams;
    use edgekd_runtime::kernels::*;
    use edgekd_runtime::{{Error, OpParts, Program, Step}};

    /// Ops in the program.
    pub const OPS: usize = {ops};
    /// Arena bytes the program needs.
    pub const ARENA_SIZE: usize = {arena};

    /// Aligns a constant as the model format does (kernels may read it by words).
    #[repr(C, align(16))]
    struct Aligned<T>(T);

    /// Aligns a prepared table for word loads.
    #[repr(C, align(4))]
    struct Table<T>(T);

    /// Each op's parts, in running order (data in flash: `build` is one loop whatever
    /// the model).
    pub static PARTS: [OpParts<'static>; OPS] = [
{steps}    ];

    /// Prepared tables by op index (`Op::wide_weights`: conv and fully connected filters
    /// widened to 16 bits beside each channel's requantization, Add's rescaled inputs),
    /// which DSP builds with the fast kernels read; the linker drops them elsewhere.
    pub static TABLES: [(usize, &[i16]); {table_count}] = [
{tables}    ];

    /// The program; every layer is checked by its kernel here, and every prepared
    /// table against its layer entry by entry ([`set_tables`]). Out of line, the program
    /// is written straight into the caller's slot.
    #[inline(never)]
    pub fn build() -> Result<Program<'static, OPS>, Error> {{
        let mut program = Program::new(ARENA_SIZE, {input:?}, {output:?});
        for parts in &PARTS {{
            program.push(Step::new(parts.clone())?)?;
        }}
        set_tables(&mut program)?;
        Ok(program)
    }}

    /// Hands the program (this one, or the same model decoded on the device) its
    /// prepared [`TABLES`] in builds whose kernels read them.
    pub fn set_tables(program: &mut Program<'static, OPS>) -> Result<(), Error> {{
        if edgekd_runtime::FC_USES_WIDE_WEIGHTS
            || edgekd_runtime::CONV_USES_WIDE_WEIGHTS
            || edgekd_runtime::ADD_USES_TABLES
        {{
            for &(op, table) in &TABLES {{
                program.set_wide_weights(op, table)?;
            }}
        }}
        Ok(())
    }}
{statics}}}",
        ops = model.op_count(),
        arena = model.arena_size(),
        steps = indent(&steps, 4),
        statics = data.source,
    );
    Ok(src)
}

/// One op's [`OpParts`] as a Rust expression, its constants added to `data`.
fn op_parts(parts: &OpParts<'_>, index: usize, data: &mut Statics) -> String {
    let params = match &parts.params {
        OpParams::FullyConnected(p, rq) => {
            format!(
                "OpParams::FullyConnected({p:?}, {})",
                data.requant(rq, index)
            )
        }
        OpParams::Conv2d(p, rq) => format!("OpParams::Conv2d({p:?}, {})", data.requant(rq, index)),
        OpParams::DepthwiseConv2d(p, rq) => {
            format!(
                "OpParams::DepthwiseConv2d({p:?}, {})",
                data.requant(rq, index)
            )
        }
        OpParams::MaxPool2d(p) => format!("OpParams::MaxPool2d({p:?})"),
        OpParams::AvgPool2d(p) => format!("OpParams::AvgPool2d({p:?})"),
        OpParams::GlobalAvgPool(p) => format!("OpParams::GlobalAvgPool({p:?})"),
        OpParams::Add(p) => format!("OpParams::Add({p:?})"),
        OpParams::Reshape => "OpParams::Reshape".to_string(),
        OpParams::Softmax(p) => format!("OpParams::Softmax({p:?})"),
    };
    let weights = match parts.weights {
        [] => "&[]".to_string(),
        w => format!(
            "&{}.0",
            data.array("i8", w, &format!("OP{index}_WEIGHTS"), true)
        ),
    };
    let bias = match parts.bias {
        Some(b) => format!(
            "Some(&{})",
            data.array("i32", b, &format!("OP{index}_BIAS"), false)
        ),
        None => "None".to_string(),
    };
    format!(
        "OpParts {{ params: {params}, input: {:?}, input2: {:?}, output: {:?}, \
         input_shape: {:?}, output_shape: {:?}, weights: {weights}, weight_shape: {:?}, \
         bias: {bias} }}",
        parts.input,
        parts.input2,
        parts.output,
        parts.input_shape,
        parts.output_shape,
        parts.weight_shape,
    )
}

/// The `static` arrays of a program's constants, each written once however many ops
/// share it.
#[derive(Default)]
struct Statics {
    source: String,
    /// Name of the array already written for a constant (its address and length in the
    /// model).
    written: HashMap<(usize, usize), String>,
}

impl Statics {
    fn requant(&mut self, rq: &Requant<'_>, index: usize) -> String {
        let m = self.array(
            "i32",
            rq.multiplier,
            &format!("OP{index}_MULTIPLIER"),
            false,
        );
        let s = self.array("i32", rq.shift, &format!("OP{index}_SHIFT"), false);
        format!("Requant {{ multiplier: &{m}, shift: &{s} }}")
    }

    /// A `static` prepared table `name`, 4-byte aligned.
    fn table(&mut self, name: &str, values: &[i16]) {
        let list: Vec<String> = values.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            self.source,
            "\n    static {name}: Table<[i16; {}]> = Table([{}]);",
            values.len(),
            list.join(", ")
        );
    }

    /// The name of a `static` holding `values` (16-byte aligned if `aligned`).
    fn array<T: Display>(&mut self, ty: &str, values: &[T], name: &str, aligned: bool) -> String {
        let key = (values.as_ptr() as usize, values.len());
        if let Some(existing) = self.written.get(&key) {
            return existing.clone();
        }
        let list: Vec<String> = values.iter().map(ToString::to_string).collect();
        let (n, list) = (values.len(), list.join(", "));
        let _ = if aligned {
            writeln!(
                self.source,
                "\n    static {name}: Aligned<[{ty}; {n}]> = Aligned([{list}]);"
            )
        } else {
            writeln!(self.source, "\n    static {name}: [{ty}; {n}] = [{list}];")
        };
        self.written.insert(key, name.to_string());
        name.to_string()
    }
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}
