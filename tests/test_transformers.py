"""Graphs exported by torch 2.13 (legacy and dynamo exporters) from transformers models match onnxruntime.

The models are built from configs with random weights by examples/export_models.py (size "tiny") and
exported once per session into a temporary folder; no ONNX file is kept in the repository.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnxscript")  # the dynamo exporter's translator
onnxruntime = pytest.importorskip("onnxruntime")

import onnx_jax  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import export_models  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5  # float32 against onnxruntime (the largest difference seen is 3.4e-6, on ResNet)
TORCH_RTOL, TORCH_ATOL = 1e-4, 1e-4  # onnx_jax against the PyTorch module itself
BATCHES = (1, 3)  # neither is the export batch (2): the batch axis must really be dynamic

# (model, exporter, opset, attention): every model with each exporter at its defaults (dynamo: opset 18,
# legacy: opset 20, sdpa attention), plus the dynamo exporter at opset 23 (Attention, RMSNormalization)
# and eager attention through the legacy exporter.
CASES = [(name, exporter, None, "sdpa") for name in export_models.MODELS for exporter in export_models.EXPORTERS]
CASES += [("llama", "dynamo", 23, "sdpa"), ("bert", "legacy", None, "eager")]


def case_id(case) -> str:
    name, exporter, opset, attention = case
    extras = ([f"opset{opset}"] if opset else []) + ([attention] if attention != "sdpa" else [])
    return "-".join([name, exporter, *extras])


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """case -> path of the exported tiny model; each case is exported at most once per session."""
    folder, paths = tmp_path_factory.mktemp("transformers"), {}

    def get(case) -> Path:
        if case not in paths:
            name, exporter, opset, attention = case
            path = folder / f"{case_id(case)}.onnx"
            export_models.export(name, path, exporter=exporter, size="tiny", opset=opset, attention=attention)
            paths[case] = path
        return paths[case]

    return get


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_onnxruntime(case, exported):
    name = case[0]
    path = exported(case)
    rep = onnx_jax.prepare(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    module = export_models.build(name, "tiny", case[3])
    assert list(rep.output_names) == [o.name for o in session.get_outputs()] == list(module.outputs)
    for batch in BATCHES:
        feeds = export_models.example_inputs(name, "tiny", batch, seed=batch)
        ours = rep.run(feeds)
        want = session.run(None, feeds)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            eager = module(*(torch.from_numpy(x) for x in feeds.values()))
        for key, a, b, c in zip(rep.output_names, ours, want, eager):
            assert a.dtype == b.dtype == np.float32 and a.shape == b.shape, (key, a.dtype, a.shape, b.dtype, b.shape)
            assert a.shape[0] == batch, key
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"{key} (batch {batch}) vs onnxruntime")
            np.testing.assert_allclose(a, c.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL, err_msg=f"{key} vs torch")
    assert rep.compiled_segments == len(BATCHES)  # one executable per batch size, no graph break
