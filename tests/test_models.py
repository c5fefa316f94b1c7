"""Real models from ../shared/models against onnxruntime's recorded outputs (io.npz)."""

from pathlib import Path

import numpy as np
import pytest

import onnx_jax

MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "models"

# name -> relative tolerance on the output's magnitude
SUPPORTED = {
    "mnist-8": 1e-4,
    "opt-mnist": 1e-4,
    "mnist-onnx-mlir": 1e-4,
    "super-resolution-10": 1e-4,
    "super-resolution-depthtospace": 1e-4,
    "image-classifier32": 1e-4,
    "fastestdet": 1e-4,
    "ultraface-rfb-320": 1e-4,
    "lgbm-classifier-ops": 1e-4,
    "mnist-quantized": 1e-4,
    "lstm-classifier": 1e-4,
    "bidi-lstm-bytes": 1e-4,
    "qlstm-scan": 1e-4,
    "xgboost-classifier-ml": 1e-4,
    "xgboost-regressor-ml": 1e-4,
    "treeensemble-sklearn-ml": 1e-4,
    "onehot-bikesharing-ml": 1e-4,
    "tiny-random-gpt2-msft": 1e-4,
}


def load_io(name: str):
    data = np.load(MODELS / name / "io.npz")
    inputs = {k.split(":", 1)[1]: data[k] for k in data.files if k.startswith("input:")}
    outputs = {k.split(":", 1)[1]: data[k] for k in data.files if k.startswith("output:")}
    return inputs, outputs


@pytest.mark.skipif(not MODELS.is_dir(), reason="../shared/models is not beside the checkout")
@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_model_matches_onnxruntime(name):
    inputs, expected = load_io(name)
    rep = onnx_jax.prepare(str(MODELS / name / "model.onnx"))
    outputs = dict(zip(rep.output_names, rep.run(inputs)))
    for key, want in expected.items():
        got = outputs[key]
        assert got.dtype == want.dtype and got.shape == want.shape, key
        if want.dtype.kind == "f":
            scale = max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(got, want, rtol=0, atol=SUPPORTED[name] * scale, err_msg=key)
        else:
            np.testing.assert_array_equal(got, want, err_msg=key)
