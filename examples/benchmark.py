"""Benchmark suite: onnx_jax vs onnxruntime, side by side in one run, on real and exported models.

Usage: python examples/benchmark.py [--runs N] [--models NAME ...]   (needs '.[test]' for torch/onnxruntime)
Each model is benchmarked in a fresh process (`onnx-jax bench --json`): compile/first-call time, median
and p90 latency at batch 1 and 8 where the model has a batch axis, throughput, and the onnx_jax /
onnxruntime latency ratio; then the geometric mean of the ratios. Peak RSS is that process's, both
runtimes included. Run it by hand on a quiet machine; timings are not tests.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models"
SHARED_MODELS = ["mnist-8", "super-resolution-10", "ultraface-rfb-320", "fastestdet", "lstm-classifier",
                 "image-classifier32", "tiny-random-gpt2-msft"]


def exported_models(folder: Path) -> dict[str, Path]:
    """Small but realistic graphs exported from PyTorch 2.13 with a dynamic batch axis."""
    import torch

    torch.manual_seed(0)

    def block(cin, cout, stride):
        return torch.nn.Sequential(
            torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False), torch.nn.BatchNorm2d(cout), torch.nn.ReLU(),
            torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(cout), torch.nn.ReLU(),
        )

    models = {
        "cnn-resnet-ish": (torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 7, 2, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2, 1),
            block(32, 64, 1), block(64, 128, 2), block(128, 256, 2),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(256, 1000)), (3, 224, 224)),
        "transformer-encoder": (torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(256, 4, 1024, batch_first=True), 4), (128, 256)),
        "mlp": (torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.GELU(), torch.nn.Linear(2048, 512)), (512,)),
    }
    paths = {}
    for name, (module, shape) in models.items():
        buffer = io.BytesIO()
        torch.onnx.export(module.eval(), (torch.randn(1, *shape),), buffer, opset_version=17, dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
        paths[name] = folder / f"{name}.onnx"
        paths[name].write_bytes(buffer.getvalue())
    return paths


def bench(path: Path, runs: int) -> dict:
    command = [sys.executable, "-m", "onnx_jax", "bench", str(path), "--json", "--quiet", "--runs", str(runs),
               "--batch", "1", "8"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    result = json.loads(done.stdout)
    result["peak_rss_mb"] = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--models", nargs="*", help="names to run (default: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: SHARED / name / "model.onnx" for name in SHARED_MODELS}
        paths.update(exported_models(Path(tmp)))
        ratios = []
        print(f"{'model':24s} {'batch':>5s} {'compile s':>9s} {'onnx_jax ms':>11s} {'p90':>7s} "
              f"{'ort ms':>8s} {'ratio':>6s} {'items/s':>9s} {'RSS MB':>7s}")
        for name, path in paths.items():
            if args.models and name not in args.models:
                continue
            result = bench(path, args.runs)
            if "error" in result:
                print(f"{name:24s} error: {result['error']}")
                continue
            for entry in result["results"]:
                ours, theirs = entry["onnx_jax"], entry.get("onnxruntime", {})
                ratios.append(entry.get("ratio", math.nan))
                print(f"{name:24s} {entry['batch']:5d} {ours['first_call_s']:9.2f} {ours['median_ms']:11.2f} "
                      f"{ours['p90_ms']:7.2f} {theirs.get('median_ms', math.nan):8.2f} {entry.get('ratio', math.nan):6.2f} "
                      f"{ours['throughput']:9.1f} {result['peak_rss_mb']:7.0f}")
        valid = [r for r in ratios if r == r]
        if valid:
            print(f"geometric mean of onnx_jax/onnxruntime latency ratios: "
                  f"{math.exp(sum(map(math.log, valid)) / len(valid)):.2f} over {len(valid)} measurements")
    return 0


if __name__ == "__main__":
    sys.exit(main())
