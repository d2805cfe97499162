//! Layer declarations (the `[[model.layers]]` tables of a recipe) and shape inference.
//!
//! Every layer maps onto `edgekd-runtime` ops: `conv` -> Conv2d, `dwconv` -> DepthwiseConv2d,
//! `dense` -> FullyConnected (with a Reshape in front when the input is not flat),
//! `maxpool`/`avgpool` -> MaxPool2d/AvgPool2d, `gap` -> GlobalAvgPool, `flatten` -> Reshape.
//! ReLU/ReLU6 are fused output clamps, BatchNorm folds into the preceding weights at export,
//! dropout is the identity at inference.

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};

/// Fused activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Act {
    /// Identity.
    #[default]
    None,
    /// max(x, 0).
    Relu,
    /// min(max(x, 0), 6).
    Relu6,
}

/// Convolution padding, TFLite semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// No padding.
    #[default]
    Valid,
    /// Output = ceil(input / stride); the extra zero goes after (bottom/right), as TFLite does.
    Same,
}

/// A kernel or stride size: one number (`[1, k]` for 1-D inputs, `[k, k]` for images) or `[h, w]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size2 {
    /// Square (or `[1, k]` on 1-D inputs).
    One(usize),
    /// `[h, w]`.
    Two([usize; 2]),
}

impl Size2 {
    /// `[h, w]` for an input of height `in_h`.
    pub fn hw(self, in_h: usize) -> [usize; 2] {
        match self {
            Size2::Two(v) => v,
            Size2::One(k) if in_h == 1 => [1, k],
            Size2::One(k) => [k, k],
        }
    }
}

fn one() -> Size2 {
    Size2::One(1)
}

/// One layer of a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum LayerSpec {
    /// 2-D convolution (1-D as H = 1), weights OHWI.
    Conv {
        /// Output channels.
        filters: usize,
        /// Kernel size.
        kernel: Size2,
        /// Stride.
        #[serde(default = "one")]
        stride: Size2,
        /// Padding.
        #[serde(default)]
        padding: Padding,
        /// BatchNorm after the convolution (folded at export).
        #[serde(default)]
        batchnorm: bool,
        /// Fused activation.
        #[serde(default)]
        act: Act,
    },
    /// Depthwise convolution (multiplier 1), weights `[1, KH, KW, C]`.
    Dwconv {
        /// Kernel size.
        kernel: Size2,
        /// Stride.
        #[serde(default = "one")]
        stride: Size2,
        /// Padding.
        #[serde(default)]
        padding: Padding,
        /// BatchNorm after the convolution (folded at export).
        #[serde(default)]
        batchnorm: bool,
        /// Fused activation.
        #[serde(default)]
        act: Act,
    },
    /// Fully connected, weights `[out, in]`; flattens a spatial input (NHWC order).
    Dense {
        /// Output features.
        units: usize,
        /// BatchNorm after the product (folded at export).
        #[serde(default)]
        batchnorm: bool,
        /// Fused activation.
        #[serde(default)]
        act: Act,
    },
    /// Max pooling (valid padding).
    Maxpool {
        /// Window.
        size: Size2,
        /// Stride (defaults to the window).
        #[serde(default)]
        stride: Option<Size2>,
    },
    /// Average pooling (valid padding).
    Avgpool {
        /// Window.
        size: Size2,
        /// Stride (defaults to the window).
        #[serde(default)]
        stride: Option<Size2>,
    },
    /// Global average pooling: `[H, W, C]` -> `[C]`.
    Gap,
    /// Reshape to a flat vector (NHWC order).
    Flatten,
    /// Dropout (training only).
    Dropout {
        /// Drop probability.
        rate: f32,
    },
}

/// A tensor shape without the batch: spatial `[H, W, C]` or flat `[F]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shape {
    /// NHWC feature map.
    Spatial([usize; 3]),
    /// Flat features.
    Flat(usize),
}

impl Shape {
    /// Number of values.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Spatial([h, w, c]) => h * w * c,
            Shape::Flat(f) => f,
        }
    }
    /// Never true for a valid layer output.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Output size and (before, after) padding along one axis, TFLite rules.
pub fn conv_out(input: usize, k: usize, s: usize, pad: Padding) -> Option<(usize, usize, usize)> {
    match pad {
        Padding::Valid => (input >= k).then(|| ((input - k) / s + 1, 0, 0)),
        Padding::Same => {
            let out = input.div_ceil(s);
            let total = ((out - 1) * s + k).saturating_sub(input);
            Some((out, total / 2, total - total / 2))
        }
    }
}

/// Geometry of a windowed layer: output size and paddings `[top, bottom, left, right]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Kernel `[kh, kw]`.
    pub k: [usize; 2],
    /// Stride `[sh, sw]`.
    pub s: [usize; 2],
    /// Padding `[top, bottom, left, right]`.
    pub pad: [usize; 4],
    /// Input `[H, W, C]`.
    pub input: [usize; 3],
    /// Output `[OH, OW]`.
    pub out: [usize; 2],
}

/// Computes a window's geometry or says why it does not fit.
pub fn window(input: [usize; 3], k: Size2, s: Size2, pad: Padding, what: &str) -> Result<Window> {
    let k = k.hw(input[0]);
    let s = s.hw(input[0]);
    ensure!(
        k.iter().chain(&s).all(|&v| v > 0),
        "{what}: kernel and stride must be positive"
    );
    let (oh, pt, pb) = conv_out(input[0], k[0], s[0], pad).ok_or_else(|| {
        anyhow::anyhow!("{what}: kernel {k:?} is larger than the input {input:?}")
    })?;
    let (ow, pl, pr) = conv_out(input[1], k[1], s[1], pad).ok_or_else(|| {
        anyhow::anyhow!("{what}: kernel {k:?} is larger than the input {input:?}")
    })?;
    Ok(Window {
        k,
        s,
        pad: [pt, pb, pl, pr],
        input,
        out: [oh, ow],
    })
}

/// Output shape of `layer` on `input`, or why it cannot apply.
pub fn infer(layer: &LayerSpec, input: Shape, idx: usize) -> Result<Shape> {
    let what = format!("layer {idx}");
    let spatial = |s: Shape| match s {
        Shape::Spatial(v) => Ok(v),
        Shape::Flat(_) => bail!("{what}: needs a spatial [H, W, C] input, got a flat vector"),
    };
    Ok(match layer {
        LayerSpec::Conv {
            filters,
            kernel,
            stride,
            padding,
            ..
        } => {
            ensure!(*filters > 0, "{what}: filters must be positive");
            let w = window(spatial(input)?, *kernel, *stride, *padding, &what)?;
            Shape::Spatial([w.out[0], w.out[1], *filters])
        }
        LayerSpec::Dwconv {
            kernel,
            stride,
            padding,
            ..
        } => {
            let i = spatial(input)?;
            let w = window(i, *kernel, *stride, *padding, &what)?;
            Shape::Spatial([w.out[0], w.out[1], i[2]])
        }
        LayerSpec::Maxpool { size, stride } | LayerSpec::Avgpool { size, stride } => {
            let i = spatial(input)?;
            let w = window(i, *size, stride.unwrap_or(*size), Padding::Valid, &what)?;
            Shape::Spatial([w.out[0], w.out[1], i[2]])
        }
        LayerSpec::Dense { units, .. } => {
            ensure!(*units > 0, "{what}: units must be positive");
            Shape::Flat(*units)
        }
        LayerSpec::Gap => Shape::Flat(spatial(input)?[2]),
        LayerSpec::Flatten => Shape::Flat(input.len()),
        LayerSpec::Dropout { rate } => {
            ensure!(
                (0.0..1.0).contains(rate),
                "{what}: dropout rate must lie in [0, 1)"
            );
            input
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tflite() {
        // 40 samples, k5 s2 SAME: out 20, total pad 3 -> (1, 2).
        assert_eq!(conv_out(40, 5, 2, Padding::Same), Some((20, 1, 2)));
        assert_eq!(conv_out(40, 5, 2, Padding::Valid), Some((18, 0, 0)));
        assert_eq!(conv_out(3, 5, 1, Padding::Valid), None);
    }
}
