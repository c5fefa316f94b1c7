"""The registry: spec defaults in signatures, version resolution, duplicate registration."""

import inspect

import numpy as np
import onnx
import pytest

from onnx_jax.graph import _attribute, get_schema
from onnx_jax.registry import REGISTRY, Registry

_EMPTY = inspect.Parameter.empty


def _same(ours, spec) -> bool:
    if isinstance(spec, float):
        return ours is not None and np.float32(ours) == np.float32(spec)
    if isinstance(spec, tuple) and spec and isinstance(spec[0], float):
        return ours is not None and np.array_equal(np.float32(ours), np.float32(spec))
    if isinstance(spec, np.ndarray):
        return isinstance(ours, np.ndarray) and np.array_equal(ours, spec)
    return ours == spec


def _standard_opdefs():
    return [d for d in REGISTRY if get_schema(d.op_type, d.domain, d.since) is not None]


def _covered_schemas(opdef):
    """Every schema version that this implementation serves (up to the next registered version)."""
    later = [v for v in REGISTRY.versions(opdef.domain, opdef.op_type) if v > opdef.since]
    until = min(later) - 1 if later else 10**6
    return [
        s
        for s in onnx.defs.get_all_schemas_with_history()
        if s.name == opdef.op_type and s.domain == opdef.domain and opdef.since <= s.since_version <= until
    ]


@pytest.mark.parametrize("opdef", _standard_opdefs(), ids=lambda d: f"{d.domain or 'ai.onnx'}::{d.op_type}-{d.since}")
def test_attribute_defaults_match_schema(opdef):
    """Keyword-only parameters are the attributes of the schemas served, with exactly the spec's defaults."""
    params = {
        p.name: p for p in inspect.signature(opdef.fn).parameters.values() if p.kind == p.KEYWORD_ONLY and p.name != "ctx"
    }
    schemas = _covered_schemas(opdef)
    known = {name for s in schemas for name in s.attributes} - {"consumed_inputs"}
    optional_somewhere = {name for s in schemas for name, a in s.attributes.items() if not a.required}
    assert set(params) == known, "keyword-only parameters must be the attributes of the schema versions served"
    for schema in schemas:
        for name, attr in schema.attributes.items():
            if name == "consumed_inputs":
                continue
            default = params[name].default
            where = f"{name} (opset {schema.since_version})"
            if attr.required and name not in optional_somewhere:
                assert default is _EMPTY, f"{where} is required by the spec and must have no default"
            elif attr.required:
                assert default is None, f"{where} is required here but optional in another version: default None"
            elif attr.default_value.type:
                assert _same(default, _attribute(attr.default_value, {}, None)), f"{where}: {default!r} is not the spec default"
            elif default is not _EMPTY:
                assert default is None, f"{where} has no spec default, so its default must be None"


def test_resolution_picks_newest_implementation_not_above_schema_version():
    registry = Registry()
    registry.register("Softmax", 1)(lambda x, *, axis=1: "v1")
    registry.register("Softmax", 13)(lambda x, *, axis=-1: "v13")
    assert registry.resolve("", "Softmax", 11).since == 1
    assert registry.resolve("", "Softmax", 12).since == 1
    assert registry.resolve("", "Softmax", 13).since == 13
    assert registry.resolve("", "Softmax", 21).since == 13


def test_unknown_op_or_version_resolves_to_none():
    registry = Registry()
    registry.register("Gelu", 20)(lambda x, *, approximate="none": x)
    assert registry.resolve("", "Gelu", 19) is None  # Gelu does not exist before opset 20
    assert registry.resolve("", "NoSuchOp", 21) is None


def test_custom_domain_uses_the_model_opset():
    registry = Registry()
    registry.register("Fancy", 1, domain="my.domain")(lambda x: x)
    assert registry.resolve("my.domain", "Fancy", 3).since == 1


def test_registering_a_key_twice_is_an_error():
    registry = Registry()
    registry.register("Relu", 14)(lambda x: x)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("Relu", 14)(lambda x: x)


def test_static_inputs_must_be_parameters():
    with pytest.raises(ValueError, match="not parameters"):
        Registry().register("Reshape", 14, static=("shap",))(lambda data, shape, *, allowzero=0: data)


def test_every_registered_standard_op_exists_in_onnx():
    for opdef in _standard_opdefs():
        assert onnx.defs.has(opdef.op_type, opdef.domain)


def test_custom_ops_go_into_a_copy_of_the_registry():
    from onnx import TensorProto, helper

    import onnx_jax

    registry = onnx_jax.REGISTRY.copy()
    registry.register("Twice", 1, domain="my.domain")(lambda x, *, factor=2.0: x * factor)
    node = helper.make_node("Twice", ["x"], ["y"], domain="my.domain", factor=3.0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.domain", 1)])
    (y,) = onnx_jax.prepare(model, registry=registry).run([np.float32([1, 2])])
    np.testing.assert_array_equal(y, [3, 6])
    assert onnx_jax.REGISTRY.resolve("my.domain", "Twice", 1) is None
    with pytest.raises(onnx_jax.UnsupportedOpError, match="my.domain::Twice"):
        onnx_jax.prepare(model)
