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


class _EmbeddedRNN(torch.nn.Module):
    def __init__(self, cell: str):
        super().__init__()
        self.embedding = torch.nn.Embedding(50, 8)
        self.rnn = getattr(torch.nn, cell)(8, 12, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(24, 3)

    def forward(self, ids):
        return self.head(self.rnn(self.embedding(ids))[0])


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_embedding_before_a_recurrent_layer(cell):
    """torch's Embedding -> bidirectional, batch-first RNN: prepare reads the input projections from tables made of
    the embedding (onnx_jax.optimize.embedded_recurrent_inputs); results as torch's, for any batch and length."""
    from onnx_jax.graph import read_graph
    from onnx_jax.optimize import INTERNAL_DOMAIN, optimize

    torch.manual_seed(4)
    module = _EmbeddedRNN(cell).eval()
    buffer = io.BytesIO()
    torch.onnx.export(module, (torch.randint(0, 50, (2, 5)),), buffer, opset_version=14, dynamo=False,
                      input_names=["ids"], dynamic_axes={"ids": {0: "batch", 1: "time"}})
    assert (INTERNAL_DOMAIN, cell) in [(n.domain, n.op_type) for n in optimize(read_graph(buffer.getvalue())).nodes]
    rep = onnx_jax.prepare(buffer.getvalue())
    for batch, time in ((1, 9), (4, 3)):
        ids = torch.randint(0, 50, (batch, time))
        (ours,) = rep.run({"ids": ids.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(ours, module(ids).numpy(), rtol=1e-4, atol=1e-5)
