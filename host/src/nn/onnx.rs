//! ONNX export of a trained float network, so a teacher trained here can be handed to any ONNX
//! runtime (and loaded back through tract-onnx as an external teacher).
//!
//! The graph takes raw `[N, H*W*C]` features (normalization is inside), converts to NCHW for
//! Conv/Pool nodes and back to NHWC before any flatten, so the dense weights keep the NHWC
//! flattening order of the float model file. Output: logits `[N, classes]`. Opset 13.

use super::model::Net;
use super::spec::{Act, LayerSpec, Shape};
use anyhow::{Context, Result};
use prost::Message;
use tract_onnx::pb;

fn attr_ints(name: &str, v: &[usize]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

/// A float tensor initializer.
pub fn f32_tensor(name: &str, dims: &[usize], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn i64_tensor(name: &str, data: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: vec![data.len() as i64],
        data_type: pb::tensor_proto::DataType::Int64 as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A float tensor value description with a symbolic batch dimension `N`.
pub fn value_info(name: &str, dims: &[usize]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let mut dim = vec![Dimension {
        value: Some(Value::DimParam("N".into())),
        ..Default::default()
    }];
    dim.extend(dims.iter().map(|&d| Dimension {
        value: Some(Value::DimValue(d as i64)),
        ..Default::default()
    }));
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Wraps a graph into a model with opset 13.
pub fn model_proto(graph: pb::GraphProto) -> pb::ModelProto {
    pb::ModelProto {
        ir_version: 7,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "edgekd".into(),
        graph: Some(graph),
        ..Default::default()
    }
}

struct Builder {
    g: pb::GraphProto,
    next: usize,
}

impl Builder {
    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<pb::AttributeProto>) -> String {
        let out = format!("t{}", self.next);
        self.next += 1;
        self.g.node.push(pb::NodeProto {
            name: format!("{op}_{}", self.next),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute: attrs,
            ..Default::default()
        });
        out
    }
    fn init(&mut self, t: pb::TensorProto) -> String {
        let name = t.name.clone();
        self.g.initializer.push(t);
        name
    }
}

fn values(net: &Net, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let p = net
        .params
        .iter()
        .find(|p| p.name == name)
        .with_context(|| format!("missing {name}"))?;
    let t = p.var.as_tensor().to_dtype(candle_core::DType::F32)?;
    Ok((t.dims().to_vec(), t.flatten_all()?.to_vec1::<f32>()?))
}

/// The `[H, W, C]` input of layer `i` (conv and pool layers only take spatial inputs).
fn spatial_input(net: &Net, i: usize) -> Result<[usize; 3]> {
    let s = if i == 0 {
        Shape::Spatial(net.input)
    } else {
        net.shapes()[i - 1]
    };
    match s {
        Shape::Spatial(s) => Ok(s),
        Shape::Flat(_) => anyhow::bail!("layer {i} needs a spatial input"),
    }
}

/// Permutes a row-major 4-D array.
fn permute4(data: &[f32], dims: [usize; 4], perm: [usize; 4]) -> Vec<f32> {
    let nd = [dims[perm[0]], dims[perm[1]], dims[perm[2]], dims[perm[3]]];
    let strides = [dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1];
    let mut out = Vec::with_capacity(data.len());
    for a in 0..nd[0] {
        for b in 0..nd[1] {
            for c in 0..nd[2] {
                for d in 0..nd[3] {
                    let idx = [a, b, c, d];
                    let mut src = 0;
                    for k in 0..4 {
                        src += idx[k] * strides[perm[k]];
                    }
                    out.push(data[src]);
                }
            }
        }
    }
    out
}

/// The ONNX model of a network (BatchNorm folded first).
pub fn to_proto(net: &Net) -> Result<pb::ModelProto> {
    let net = net.folded()?;
    let mut b = Builder {
        g: pb::GraphProto {
            name: "edgekd".into(),
            ..Default::default()
        },
        next: 0,
    };
    let [h, w, c] = net.input;
    b.g.input.push(value_info("input", &[h * w * c]));
    let shape = b.init(i64_tensor(
        "input_shape",
        &[-1, h as i64, w as i64, c as i64],
    ));
    let mut cur = b.node("Reshape", &["input", &shape], vec![]);
    let mean = b.init(f32_tensor("norm_mean", &[c], &net.norm.mean));
    let std = b.init(f32_tensor("norm_std", &[c], &net.norm.std));
    cur = b.node("Sub", &[&cur, &mean], vec![]);
    cur = b.node("Div", &[&cur, &std], vec![]);
    // Layout of `cur`: Some(true) NCHW, Some(false) NHWC, None flat.
    let mut nchw = Some(false);
    let to_nchw = |b: &mut Builder, cur: String, nchw: &mut Option<bool>| -> String {
        if *nchw == Some(false) {
            *nchw = Some(true);
            b.node("Transpose", &[&cur], vec![attr_ints("perm", &[0, 3, 1, 2])])
        } else {
            cur
        }
    };
    let flatten = |b: &mut Builder, cur: String, nchw: &mut Option<bool>| -> String {
        let cur = if *nchw == Some(true) {
            b.node("Transpose", &[&cur], vec![attr_ints("perm", &[0, 2, 3, 1])])
        } else {
            cur
        };
        let out = if nchw.is_some() {
            b.node("Flatten", &[&cur], vec![attr_int("axis", 1)])
        } else {
            cur
        };
        *nchw = None;
        out
    };
    let mut relu6: Option<(String, String)> = None;
    for (i, layer) in net.layers.iter().enumerate() {
        let act = match layer {
            LayerSpec::Conv {
                kernel,
                stride,
                padding,
                act,
                ..
            }
            | LayerSpec::Dwconv {
                kernel,
                stride,
                padding,
                act,
                ..
            } => {
                let in_shape = spatial_input(&net, i)?;
                let win = super::spec::window(in_shape, *kernel, *stride, *padding, "conv")?;
                cur = to_nchw(&mut b, cur, &mut nchw);
                let (dims, data) = values(&net, &format!("l{i}.weight"))?;
                let d4 = [dims[0], dims[1], dims[2], dims[3]];
                let depthwise = matches!(layer, LayerSpec::Dwconv { .. });
                // OHWI -> OIHW; depthwise [1, KH, KW, C] -> [C, 1, KH, KW].
                let (wd, wdims) = if depthwise {
                    (permute4(&data, d4, [3, 0, 1, 2]), [d4[3], 1, d4[1], d4[2]])
                } else {
                    (
                        permute4(&data, d4, [0, 3, 1, 2]),
                        [d4[0], d4[3], d4[1], d4[2]],
                    )
                };
                let wn = b.init(f32_tensor(&format!("l{i}.weight"), &wdims, &wd));
                let (bd, bv) = values(&net, &format!("l{i}.bias"))?;
                let bn = b.init(f32_tensor(&format!("l{i}.bias"), &bd, &bv));
                let [pt, pb_, pl, pr] = win.pad;
                let mut attrs = vec![
                    attr_ints("kernel_shape", &win.k),
                    attr_ints("strides", &win.s),
                    attr_ints("pads", &[pt, pl, pb_, pr]),
                ];
                if depthwise {
                    attrs.push(attr_int("group", in_shape[2] as i64));
                }
                cur = b.node("Conv", &[&cur, &wn, &bn], attrs);
                *act
            }
            LayerSpec::Dense { act, .. } => {
                cur = flatten(&mut b, cur, &mut nchw);
                let (wd, wv) = values(&net, &format!("l{i}.weight"))?;
                let wn = b.init(f32_tensor(&format!("l{i}.weight"), &wd, &wv));
                let (bd, bv) = values(&net, &format!("l{i}.bias"))?;
                let bn = b.init(f32_tensor(&format!("l{i}.bias"), &bd, &bv));
                cur = b.node("Gemm", &[&cur, &wn, &bn], vec![attr_int("transB", 1)]);
                *act
            }
            LayerSpec::Maxpool { size, stride } | LayerSpec::Avgpool { size, stride } => {
                let in_h = spatial_input(&net, i)?[0];
                cur = to_nchw(&mut b, cur, &mut nchw);
                let op = if matches!(layer, LayerSpec::Maxpool { .. }) {
                    "MaxPool"
                } else {
                    "AveragePool"
                };
                cur = b.node(
                    op,
                    &[&cur],
                    vec![
                        attr_ints("kernel_shape", &size.hw(in_h)),
                        attr_ints("strides", &stride.unwrap_or(*size).hw(in_h)),
                    ],
                );
                Act::None
            }
            LayerSpec::Gap => {
                cur = to_nchw(&mut b, cur, &mut nchw);
                cur = b.node("GlobalAveragePool", &[&cur], vec![]);
                cur = b.node("Flatten", &[&cur], vec![attr_int("axis", 1)]);
                nchw = None;
                Act::None
            }
            LayerSpec::Flatten => {
                cur = flatten(&mut b, cur, &mut nchw);
                Act::None
            }
            LayerSpec::Dropout { .. } => Act::None,
        };
        cur = match act {
            Act::None => cur,
            Act::Relu => b.node("Relu", &[&cur], vec![]),
            Act::Relu6 => {
                let (lo, hi) = match &relu6 {
                    Some(v) => v.clone(),
                    None => {
                        let lo = b.init(f32_tensor("relu6_min", &[], &[0.0]));
                        let hi = b.init(f32_tensor("relu6_max", &[], &[6.0]));
                        relu6 = Some((lo.clone(), hi.clone()));
                        (lo, hi)
                    }
                };
                b.node("Clip", &[&cur, &lo, &hi], vec![])
            }
        };
    }
    // Name the final value `logits`.
    b.g.node.push(pb::NodeProto {
        name: "logits".into(),
        op_type: "Identity".into(),
        input: vec![cur],
        output: vec!["logits".into()],
        ..Default::default()
    });
    b.g.output.push(value_info("logits", &[net.classes]));
    Ok(model_proto(b.g))
}

/// The ONNX file's bytes.
pub fn to_bytes(net: &Net) -> Result<Vec<u8>> {
    Ok(to_proto(net)?.encode_to_vec())
}
