"""Export an ONNX model as a serialized jax.export artifact (StableHLO) and reload it without onnx_jax.

Usage: python examples/export_stablehlo.py [MODEL.onnx]   (default: ../shared/models/mnist-8)
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
from jax import export

import onnx_jax

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "mnist-8" / "model.onnx"


def main(path: Path) -> None:
    fn, params = onnx_jax.to_jax(str(path), fold_weights=True)
    rep = onnx_jax.prepare(str(path))
    info = rep.program.graph.inputs[0]
    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in info.shape)
    exported = export.export(jax.jit(lambda *xs: fn(params, *xs)))(jax.ShapeDtypeStruct(shape, info.dtype))
    blob = exported.serialize()
    print(f"{path.name}: {len(blob)} bytes of serialized StableHLO, inputs {exported.in_avals}")

    restored = export.deserialize(blob)  # needs only jax, not onnx_jax or onnx
    x = np.random.default_rng(0).standard_normal(shape).astype(info.dtype)
    (ours,) = restored.call(x)
    np.testing.assert_allclose(ours, rep.run([x])[0], rtol=1e-5, atol=1e-5)
    print("the reloaded artifact gives the same outputs as onnx_jax.prepare(...).run(...)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
