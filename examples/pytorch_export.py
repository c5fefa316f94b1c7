"""The seed flow: export a PyTorch model to ONNX, run it with onnx_jax, compare with torch and onnxruntime.

Usage: python examples/pytorch_export.py   (needs torch and onnxruntime: pip install -e '.[test]')
"""

from __future__ import annotations

import io

import numpy as np
import onnxruntime
import torch

import onnx_jax


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        )
        self.head = torch.nn.Linear(16, 10)

    def forward(self, x):
        return torch.softmax(self.head(torch.flatten(self.features(x), 1)), dim=-1)


def export(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    torch.onnx.export(
        model.eval(), (example,), buffer, opset_version=14, dynamo=False,
        input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )
    return buffer.getvalue()


def main() -> None:
    torch.manual_seed(0)
    for name, model, shape in [("Linear(3, 2)", torch.nn.Linear(3, 2), (3,)), ("small CNN", SmallCNN(), (3, 16, 16))]:
        onnx_bytes = export(model, torch.randn(1, *shape))
        rep = onnx_jax.prepare(onnx_bytes)  # one prepared model serves every batch size
        session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        print(name)
        for batch in (1, 5):
            x = torch.randn(batch, *shape)
            (ours,) = rep.run({"x": x.numpy()})
            with torch.no_grad():
                reference = model(x).numpy()
            (ort,) = session.run(None, {"x": x.numpy()})
            print(f"  batch {batch}: output {ours.dtype}{list(ours.shape)}, "
                  f"max |onnx_jax - torch| {np.abs(ours - reference).max():.1e}, "
                  f"max |onnx_jax - onnxruntime| {np.abs(ours - ort).max():.1e}")
            np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


if __name__ == "__main__":
    main()
