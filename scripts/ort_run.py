#!/usr/bin/env python3
"""Run an ONNX model in onnxruntime on a .npy batch and save the output as .npy.

Used by host/tests/onnx_onnxruntime.rs to cross-check `edgekd export --format onnx`
in an independent ONNX implementation. The input array is cast to the model input's
element type (int8 or float); the first output is written unchanged.

usage: ort_run.py MODEL.onnx INPUT.npy OUTPUT.npy
Needs `pip install onnxruntime numpy` (scripts/bootstrap.sh installs them).
"""
import sys


def main(argv):
    if len(argv) != 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        print(f"ort_run.py: {e}; install with `python3 -m pip install onnxruntime numpy`",
              file=sys.stderr)
        return 3
    model, inp, out = argv[1:]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # unused-initializer warnings are noise here
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    info = sess.get_inputs()[0]
    dtype = {"tensor(int8)": np.int8, "tensor(float)": np.float32}.get(info.type)
    if dtype is None:
        print(f"ort_run.py: unsupported input type {info.type}", file=sys.stderr)
        return 1
    x = np.load(inp).astype(dtype)
    (y,) = sess.run([sess.get_outputs()[0].name], {info.name: x})
    np.save(out, y)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
