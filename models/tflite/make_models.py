#!/usr/bin/env python3
"""Generates the int8 .tflite test models and TensorFlow Lite's reference outputs.

For each model this writes, next to this script:
  <name>.tflite         full-integer int8 model from the TFLite converter
  <name>.input.npy      16 int8 inputs, shaped like the model input with batch 16
  <name>.expected.npy   int8 outputs of TFLite's interpreter with the REFERENCE op
                        resolver (BUILTIN_REF), shape [16, 10]
and prints (JSON), per model, the ops in the file and how many outputs TFLite's
optimized kernels (BUILTIN_WITHOUT_DEFAULT_DELEGATES) and its default resolver with
the XNNPACK delegate (BUILTIN) give differently from its reference kernels.

It also writes three models the importer must refuse (no expected outputs):
  refuse_logistic.tflite  full int8 with an op edgekd-runtime lacks (LOGISTIC)
  refuse_float.tflite     a float32 model
  refuse_hybrid.tflite    dynamic-range quantized: int8 weights, float activations

TensorFlow is a dependency of this script only, never of the edgekd tool:

    python3 -m venv /work/venv-tf
    /work/venv-tf/bin/pip install 'tensorflow-cpu==2.21.*'
    /work/venv-tf/bin/python models/tflite/make_models.py

Weights are Keras' seeded initialisation plus random biases (nonzero biases exercise
the int32 bias path); no training is needed for an arithmetic test. Each model is
calibrated on 200 seeded normal samples; the 16 test inputs are fresh samples from
the same distribution, quantized with the model's input parameters, except the last
two, drawn 4x wider so that they saturate (-128/127) and exercise the clamps.

The converter quantizes dense layers per channel by default; the MLP is converted with
per-tensor dense weights instead (as older converters and many deployed models do),
because TFLite derives that multiplier differently (float product of the scales).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
N_TEST = 16
N_CALIB = 200
layers = tf.keras.layers


def tiny_cnn():
    """conventions.md tiny 1-D CNN: conv 8 k5 s2 ReLU, conv 16 k3 s2 ReLU (valid), FC 10."""
    inp = tf.keras.Input((40, 1), batch_size=1, name="signal")
    x = layers.Conv1D(8, 5, strides=2, activation="relu")(inp)
    x = layers.Conv1D(16, 3, strides=2, activation="relu")(x)
    x = layers.Flatten()(x)
    out = layers.Dense(10, name="logits")(x)
    return tf.keras.Model(inp, out, name="tiny_cnn")


def mlp():
    """conventions.md MLP 40-32-10 with ReLU."""
    inp = tf.keras.Input((40,), batch_size=1, name="signal")
    x = layers.Dense(32, activation="relu")(inp)
    out = layers.Dense(10, name="logits")(x)
    return tf.keras.Model(inp, out, name="mlp")


def ds_cnn():
    """Depthwise-separable CNN covering every op the importer maps.

    SAME padding with odd and even totals (asymmetric pads), a stride-2 depthwise
    conv with depth multiplier 2, max and average pooling (the latter with SAME
    padding, so edge windows average fewer cells), a residual ADD with a fused
    ReLU, MEAN over H and W (keepdims), RESHAPE (folded away by the converter),
    FULLY_CONNECTED and SOFTMAX.
    """
    inp = tf.keras.Input((12, 10, 1), batch_size=1, name="image")
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    y = layers.Conv2D(8, 1)(y)
    x = layers.Add()([x, y])
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.DepthwiseConv2D(
        3, strides=2, padding="same", depth_multiplier=2, activation="relu"
    )(x)
    x = layers.Conv2D(16, 1, activation="relu")(x)
    x = layers.AveragePooling2D(2, strides=1, padding="same")(x)
    x = layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(10)(x)
    out = layers.Softmax(name="probs")(x)
    return tf.keras.Model(inp, out, name="ds_cnn")


# (name, builder, seed, per-tensor dense weights)
MODELS = [
    ("tiny_cnn", tiny_cnn, 1, False),
    ("mlp", mlp, 2, True),
    ("ds_cnn", ds_cnn, 3, False),
]


def logistic_mlp():
    inp = tf.keras.Input((40,), batch_size=1, name="signal")
    x = layers.Dense(10)(inp)
    out = layers.Activation("sigmoid")(x)
    return tf.keras.Model(inp, out, name="refuse_logistic")


def randomize_biases(model, rng):
    for layer in model.layers:
        weights = layer.get_weights()
        if len(weights) == 2 and weights[1].ndim == 1:
            weights[1] = rng.normal(0.0, 0.1, weights[1].shape).astype(np.float32)
            layer.set_weights(weights)


def convert(model, calib, per_tensor_dense=False, kind="int8"):
    def representative():
        for x in calib:
            yield [x[None].astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind == "float":
        return conv.convert()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "hybrid":
        return conv.convert()
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    conv._experimental_disable_per_channel_quantization_for_dense_layers = per_tensor_dense
    return conv.convert()


def run(tflite, inputs, resolver):
    interp = tf.lite.Interpreter(
        model_content=tflite, experimental_op_resolver_type=resolver, num_threads=1
    )
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    rows = []
    for x in inputs:
        interp.set_tensor(inp["index"], x[None])
        interp.invoke()
        rows.append(interp.get_tensor(out["index"]).reshape(-1).copy())
    return np.stack(rows).astype(np.int8)


def op_names(tflite):
    interp = tf.lite.Interpreter(model_content=tflite)
    return [d["op_name"] for d in interp._get_ops_details()]


def main():
    summary = {"tensorflow": tf.__version__, "models": {}}
    for name, build, seed, per_tensor_dense in MODELS:
        tf.keras.utils.set_random_seed(seed)
        rng = np.random.default_rng(seed)
        model = build()
        randomize_biases(model, rng)
        shape = tuple(model.input_shape[1:])
        calib = rng.normal(0.0, 1.0, (N_CALIB,) + shape).astype(np.float32)
        test = rng.normal(0.0, 1.0, (N_TEST,) + shape).astype(np.float32)
        test[-2:] *= 4.0
        tflite = convert(model, calib, per_tensor_dense)

        interp = tf.lite.Interpreter(model_content=tflite)
        d = interp.get_input_details()[0]
        assert d["dtype"] == np.int8, d
        scale, zp = d["quantization"]
        q = np.clip(np.round(test / scale) + zp, -128, 127).astype(np.int8)

        resolvers = tf.lite.experimental.OpResolverType
        ref = run(tflite, q, resolvers.BUILTIN_REF)
        opt = run(tflite, q, resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        xnn = run(tflite, q, resolvers.BUILTIN)
        diff = np.abs(ref.astype(np.int32) - opt.astype(np.int32))
        diff_xnn = np.abs(ref.astype(np.int32) - xnn.astype(np.int32))

        with open(os.path.join(HERE, f"{name}.tflite"), "wb") as f:
            f.write(tflite)
        np.save(os.path.join(HERE, f"{name}.input.npy"), q)
        np.save(os.path.join(HERE, f"{name}.expected.npy"), ref)
        summary["models"][name] = {
            "ops": op_names(tflite),
            "bytes": len(tflite),
            "input_shape": list(q.shape),
            "outputs": int(ref.size),
            "optimized_vs_reference_differing": int((diff > 0).sum()),
            "optimized_vs_reference_max_lsb": int(diff.max()),
            "xnnpack_vs_reference_differing": int((diff_xnn > 0).sum()),
            "xnnpack_vs_reference_max_lsb": int(diff_xnn.max()),
        }

    tf.keras.utils.set_random_seed(4)
    rng = np.random.default_rng(4)
    calib = rng.normal(0.0, 1.0, (N_CALIB, 40)).astype(np.float32)
    refusals = [
        ("refuse_logistic", logistic_mlp(), "int8"),
        ("refuse_float", mlp(), "float"),
        ("refuse_hybrid", mlp(), "hybrid"),
    ]
    for name, model, kind in refusals:
        tflite = convert(model, calib, kind=kind)
        with open(os.path.join(HERE, f"{name}.tflite"), "wb") as f:
            f.write(tflite)
        summary["refusals"] = summary.get("refusals", {})
        summary["refusals"][name] = {"ops": op_names(tflite), "bytes": len(tflite)}
    json.dump(summary, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
