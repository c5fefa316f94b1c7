"""One exception hierarchy: every error onnx_jax raises on purpose is an OnnxJaxError."""

from __future__ import annotations

from collections.abc import Iterable


class OnnxJaxError(Exception):
    """Base class of every error onnx_jax raises deliberately."""


class InvalidModelError(OnnxJaxError, ValueError):
    """The model itself is malformed: bad file, undefined value, wrong attribute, unknown opset."""


class InvalidInputError(OnnxJaxError, ValueError):
    """An input given to `run` does not match what the graph declares."""


class StaticValueRequiredError(OnnxJaxError, ValueError):
    """An op input that fixes a shape (Reshape's shape, Slice's starts, ...) is only known at run time."""

    def __init__(self, node: str, op_type: str, input_name: str, position: int):
        self.node, self.op_type, self.input_name = node, op_type, input_name
        super().__init__(
            f"node {node!r} ({op_type}): input {position} {input_name!r} must be known statically "
            "(a constant, an initializer, or computed from shapes), but it depends on run-time data"
        )


class NodeExecutionError(OnnxJaxError, ValueError):
    """An op failed while the graph was traced; the message names the node."""

    def __init__(self, node: str, op_type: str, cause: BaseException):
        self.node, self.op_type = node, op_type
        super().__init__(f"node {node!r} ({op_type}) failed: {type(cause).__name__}: {cause}")


class UnsupportedOpError(OnnxJaxError, NotImplementedError):
    """Ops of the model that onnx_jax cannot run; all of them, found at prepare time."""

    def __init__(self, missing: Iterable[tuple[str, str, int, tuple[str, ...]]]):
        self.missing = tuple(missing)
        lines = []
        for domain, op_type, version, nodes in self.missing:
            shown = ", ".join(repr(n) for n in nodes[:5]) + (" ..." if len(nodes) > 5 else "")
            lines.append(f"  {domain or 'ai.onnx'}::{op_type} (opset {version}) at nodes {shown}")
        names = ", ".join(f"{domain or 'ai.onnx'}::{op_type}-{version}" for domain, op_type, version, _ in self.missing)
        super().__init__(f"unsupported op(s): {names}\n" + "\n".join(lines))


class DataDependentShapeError(OnnxJaxError, ValueError):
    """An output's shape depends on run-time data in a way one compiled XLA program cannot express."""

    def __init__(self, node: str, op_type: str, detail: str):
        self.node, self.op_type = node, op_type
        super().__init__(f"node {node!r} ({op_type}): {detail}")
