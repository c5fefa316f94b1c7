"""The seed flow: PyTorch exports run through onnx_jax.prepare(...).run(...) and match torch."""

import io

import numpy as np
import pytest
import torch

import onnx_jax


def export(module, example, opset=14, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.onnx.export(module.eval(), (example,), buffer, opset_version=opset, dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}}, **kwargs)
    return buffer.getvalue()


def check(module, shape, batches=(1, 5), rtol=1e-4, atol=1e-5, **kwargs):
    rep = onnx_jax.prepare(export(module, torch.randn(2, *shape), **kwargs))
    for batch in batches:
        x = torch.randn(batch, *shape)
        (ours,) = rep.run({"x": x.numpy()})
        with torch.no_grad():
            want = module(x).numpy()
        assert ours.dtype == want.dtype and ours.shape == want.shape
        np.testing.assert_allclose(ours, want, rtol=rtol, atol=atol)
    assert rep.compiled_segments == len(set(batches))


def test_linear_seed_flow():
    torch.manual_seed(0)
    check(torch.nn.Linear(3, 2), (3,))


def test_mlp_dynamic_batch():
    torch.manual_seed(1)
    check(torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.Linear(16, 4), torch.nn.Softmax(-1)),
          (6,), batches=(1, 5, 8))


@pytest.mark.parametrize("opset", [11, 14, 17])
def test_cnn_dynamic_batch(opset):
    torch.manual_seed(2)
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 8, 3, padding=1, groups=2), torch.nn.LeakyReLU(0.1),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5),
    )
    check(cnn, (3, 16, 16), opset=opset)


def test_cnn_without_constant_folding():
    torch.manual_seed(3)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Sigmoid(),
                              torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 2))
    check(cnn, (1, 8, 8), do_constant_folding=False)
