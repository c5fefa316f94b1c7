"""The persistent compilation cache: whole-graph executables kept on disk, so a new process skips tracing and
compiling.

Entries are keyed by onnx_jax's code, the graph's content and the input signature. JAX's own persistent cache
is not used underneath: an XLA CPU executable that JAX loaded from its cache serializes without all of its
functions ("NOT_FOUND: Function ... not found" when the copy runs). Where the user configured JAX's cache
themselves, onnx_jax leaves executables to it and stores none.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import tempfile
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.experimental.serialize_executable import deserialize_and_load, serialize

from .graph import Graph

ENV = "ONNX_JAX_CACHE_DIR"


def cache_dir() -> str | None:
    """$ONNX_JAX_CACHE_DIR when set (empty: no cache), else onnx_jax/xla in the user's cache dir; None where the
    user configured JAX's own persistent cache."""
    if jax.config.jax_compilation_cache_dir:
        return None
    value = os.environ.get(ENV)
    if value is not None:
        return value or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "onnx_jax", "xla")


def graph_digest(graph: Graph, traced: frozenset[str] = frozenset()) -> str:
    """A content hash of a graph: nodes, attributes (subgraphs included), initializers' bytes, opsets. Of the
    initializers named in `traced` (weights the executable takes as arguments) only names, dtypes and shapes
    count: their values are not compiled in, and hashing a large model's bytes took ~0.1 s at start-up."""
    h = hashlib.sha256()
    _hash_graph(h, graph, traced)
    return h.hexdigest()


def _hash_graph(h: Any, graph: Graph, traced: frozenset[str] = frozenset()) -> None:
    h.update(repr((graph.name, sorted(graph.opsets.items()), graph.inputs, graph.outputs)).encode())
    for node in graph.nodes:
        h.update(repr((node.op_type, node.domain, node.name, node.inputs, node.outputs, node.opset)).encode())
        for name, value in sorted(node.attrs.items()):
            h.update(name.encode())
            _hash_value(h, value)
    for name, array in sorted(graph.initializers.items()):
        h.update(repr((name, array.dtype.str, array.shape, name in traced)).encode())
        if name not in traced:
            h.update(np.ascontiguousarray(array).view(np.uint8).data if array.dtype != object else repr(array).encode())
    for key, function in sorted(graph.functions.items()):
        h.update(repr(key).encode() + function.SerializeToString(deterministic=True))


def _hash_value(h: Any, value: Any) -> None:
    if isinstance(value, Graph):
        _hash_graph(h, value)
    elif isinstance(value, (tuple, list)):
        for item in value:
            _hash_value(h, item)
    elif isinstance(value, np.ndarray) and value.dtype != object:
        h.update(repr((value.dtype.str, value.shape)).encode() + np.ascontiguousarray(value).view(np.uint8).data)
    else:
        h.update(repr(value).encode())


def _entry(key: str) -> str | None:
    directory = cache_dir()
    return os.path.join(directory, f"onnx_jax-{key}.pkl") if directory else None


def load_executable(key: str, devices_of: Callable[[dict], list[jax.Device] | None]) -> tuple[Any, dict] | None:
    """A compiled executable, loaded onto the devices `devices_of` names for what was stored beside it, and that;
    or None (not there, or not loadable here)."""
    path = _entry(key)
    if path is None or not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            payload, in_tree, out_tree, extra = pickle.load(f)
        devices = devices_of(extra)
        if not devices:
            return None
        return deserialize_and_load(payload, in_tree, out_tree, devices[0].client, devices), extra
    except Exception:  # written by another version, truncated, ...: compile anew (and overwrite it)
        return None


def discard_executable(key: str) -> None:
    if (path := _entry(key)) is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)


def store_executable(key: str, executable: Any, extra: dict) -> None:
    """Keep a compiled executable (and `extra`, picklable) for new processes; best effort, never raises."""
    directory, temporary = cache_dir(), None
    if not directory:
        return
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, delete=False, suffix=".tmp") as f:
            temporary = f.name
            pickle.dump((*serialize(executable), extra), f)
        os.replace(temporary, _entry(key))
    except Exception:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


@functools.cache
def code_digest() -> str:
    """A hash of onnx_jax's own source and the versions of what compiles it: stored executables of other code
    are never loaded."""
    import jaxlib

    h = hashlib.sha256(f"{jax.__version__} {jaxlib.__version__} {np.__version__}".encode())
    package = os.path.dirname(os.path.abspath(__file__))
    for root, dirs, files in sorted(os.walk(package)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                with open(os.path.join(root, name), "rb") as f:
                    h.update(name.encode() + f.read())
    return h.hexdigest()
