"""Benchmark models without their weights, so that a suite travels light (a lent GPU machine takes 64 MiB).

Usage: python examples/weightless.py strip SRC_DIR DST_DIR   (every SRC_DIR/*.onnx, weights replaced by their moments)
       python examples/weightless.py refill DIR              (draws the weights back, in place)

`strip` keeps a large float initializer's shape, dtype, mean, standard deviation and range, and drops its values;
`refill` draws new values from a normal distribution with those moments, clipped to that range (so variances stay
positive). Latency does not depend on the values, and both runtimes then run the same refilled model, so the
benchmark's comparison holds; the models' outputs are not the originals'. Small tensors, tensors of few distinct
values (masks, ones) and tensors holding NaN or infinities travel exactly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

MIN_ELEMENTS = 4096
MARK = "onnx_jax.weightless"
FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


def strip(src: Path, dst: Path) -> None:
    model = onnx.load(src)
    for tensor in model.graph.initializer:
        if tensor.data_type not in FLOATS or np.prod(tensor.dims) < MIN_ELEMENTS:
            continue
        values = numpy_helper.to_array(tensor).astype(np.float64)
        if not np.isfinite(values).all() or len(np.unique(values[:65536])) <= 16:
            continue
        moments = [values.mean(), values.std(), values.min(), values.max()]
        kept = onnx.TensorProto(name=tensor.name, dims=tensor.dims, data_type=tensor.data_type,
                                doc_string=f"{MARK} " + " ".join(map(repr, map(float, moments))))
        tensor.CopyFrom(kept)
    onnx.save(model, dst)


def refill(path: Path, seed: int = 0) -> None:
    model = onnx.load(path)
    rng = np.random.default_rng(seed)
    for tensor in model.graph.initializer:
        if not tensor.doc_string.startswith(MARK):
            continue
        mean, std, low, high = map(float, tensor.doc_string.split()[1:])
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        values = np.clip(rng.normal(mean, std, tuple(tensor.dims)), low, high).astype(dtype)
        tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    onnx.save(model, path)


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "strip":
        src, dst = map(Path, argv[1:])
        dst.mkdir(parents=True, exist_ok=True)
        for path in sorted(src.glob("*.onnx")):
            strip(path, dst / path.name)
            print(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB -> {(dst / path.name).stat().st_size / 1e6:.2f} MB")
        return 0
    if len(argv) == 2 and argv[0] == "refill":
        for path in sorted(Path(argv[1]).glob("*.onnx")):
            refill(path)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
