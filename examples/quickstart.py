"""Run real exported ONNX models with onnx_jax and check them against onnxruntime's recorded outputs.

Usage: python examples/quickstart.py [MODEL_DIR ...]   (default: a few models from ../shared/models)
Each MODEL_DIR holds model.onnx and io.npz (input:NAME / output:NAME arrays).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import onnx_jax

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models"
DEFAULT = ["mnist-8", "super-resolution-10", "ultraface-rfb-320", "lstm-classifier"]


def run_one(folder: Path) -> bool:
    data = np.load(folder / "io.npz")
    inputs = {k.split(":", 1)[1]: data[k] for k in data.files if k.startswith("input:")}
    expected = {k.split(":", 1)[1]: data[k] for k in data.files if k.startswith("output:")}

    start = time.perf_counter()
    rep = onnx_jax.prepare(str(folder / "model.onnx"))
    outputs = rep.run(inputs)  # the first run compiles for this input signature
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(10):
        outputs = rep.run(inputs)
    steady = (time.perf_counter() - start) / 10

    ok = True
    for name, got in zip(rep.output_names, outputs):
        want = expected[name]
        error = float(np.abs(got.astype(np.float64) - want).max()) if want.size else 0.0
        scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
        match = got.shape == want.shape and got.dtype == want.dtype and error <= 1e-4 * scale
        ok &= match
        print(f"  {name}: {got.dtype}{list(got.shape)}  max |error| vs onnxruntime {error:.2e}  {'ok' if match else 'MISMATCH'}")
    print(f"  prepare + first run {first * 1e3:.0f} ms, then {steady * 1e3:.2f} ms per run")
    return ok


def main(argv: list[str]) -> int:
    folders = [Path(a) for a in argv] or [SHARED / name for name in DEFAULT]
    failures = 0
    for folder in folders:
        print(f"{folder.name}")
        failures += not run_one(folder)
    print("all outputs match" if not failures else f"{failures} model(s) mismatched")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
