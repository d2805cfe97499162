#!/usr/bin/env python3
"""Rescale hidden unit U of a trained edgekd MLP (model.safetensors) by K.

Multiplies unit U's incoming weights and bias by K and divides its outgoing weights by K.
ReLU is positive-homogeneous, so the float model computes the same function; per-tensor
weight quantization of the first layer (one scale, set by the big unit) and the hidden
activation's range do not. models/README.md ("A case where PTQ really loses") uses it to
measure what bias correction, QAT + KD and cross-layer equalization recover.

usage: rescale_unit.py SRC.safetensors DST.safetensors K [U]
Needs numpy. The safetensors header (with edgekd's metadata) is copied unchanged.
"""
import json
import struct
import sys

import numpy as np


def main(argv):
    if len(argv) not in (4, 5):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src, dst, k = argv[1], argv[2], float(argv[3])
    unit = int(argv[4]) if len(argv) == 5 else 0
    raw = open(src, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = bytearray(raw[8 + n:])

    def get(name):
        s, e = header[name]["data_offsets"]
        return np.frombuffer(bytes(data[s:e]), dtype=np.float32).reshape(header[name]["shape"]).copy()

    def put(name, a):
        s, e = header[name]["data_offsets"]
        data[s:e] = a.astype(np.float32).tobytes()

    weights = sorted(k_ for k_ in header if k_.endswith(".weight"))
    if len(weights) < 2:
        print(f"{src}: needs two dense layers, found {weights}", file=sys.stderr)
        return 1
    w1, w2 = weights[:2]
    b1 = w1.replace("weight", "bias")
    W1, B1, W2 = get(w1), get(b1), get(w2)
    if W1.ndim != 2 or W2.ndim != 2 or not 0 <= unit < W1.shape[0]:
        print(f"{src}: {w1} {W1.shape}, {w2} {W2.shape}: not an MLP with unit {unit}", file=sys.stderr)
        return 1
    W1[unit] *= k
    B1[unit] *= k
    W2[:, unit] /= k
    put(w1, W1)
    put(b1, B1)
    put(w2, W2)
    open(dst, "wb").write(raw[:8 + n] + bytes(data))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
