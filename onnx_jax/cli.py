"""The `onnx-jax` command line: run, check, compare, bench and export a model; list the supported ops.

Every subcommand builds a result dict; `--json` prints it as JSON on stdout, otherwise a renderer
prints it as text. Exit codes: 0 success, 1 a mismatch (compare) or unsupported ops (check),
2 an error (a bad model, input or argument).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .compiler import Program, resolve_node, static_names
from .dtypes import x64
from .errors import OnnxJaxError
from .graph import STANDARD_DOMAINS, Graph, Node, ValueInfo, build_graph, function_graph, get_schema, load_model
from .registry import REGISTRY, Registry

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2

DEFAULT_RTOL = 1e-4  # compare: a value matches when max|ours - ref| <= atol + rtol * max|ref|
DEFAULT_ATOL = 1e-4
DEFAULT_BENCH_RUNS = 20
BENCH_WARMUP_RUNS = 2  # untimed calls after the first one, before the timed ones
PAGE_FAULT_HINT = 1000  # page faults per run above which bench suggests the allocator settings of docs/faq.md
RANDOM_INT_HIGH = 10  # random integer inputs are drawn from [0, RANDOM_INT_HIGH): valid as small indices

EXAMPLES = """\
examples:
  onnx-jax check model.onnx                      which ops are supported, input/output shapes
  onnx-jax run model.onnx                        random inputs (seeded), symbolic dims = 1
  onnx-jax run model.onnx --input x=x.npy --out y.npz
  onnx-jax run model.onnx --input io.npz         inputs from an npz (keys NAME or input:NAME)
  onnx-jax compare model.onnx --batch 4          against onnxruntime; names the first diverging node
  onnx-jax bench model.onnx --batch 1 8 --runs 50
  onnx-jax export model.onnx -o model.jax        a serialized jax.export artifact (concrete shapes)
  onnx-jax export model.onnx -o model.jax --symbolic     one artifact for every batch size (experimental)
  onnx-jax ops --markdown > docs/operators.md    the operator table
  onnx-jax --json check model.onnx | jq .supported

exit codes: 0 success, 1 mismatch (compare) or unsupported ops (check), 2 error.
"""


class CliError(Exception):
    """A problem with the command line itself (a bad --input, a missing file): one line, exit 2."""


# ---------------------------------------------------------------------------------------------
# Output: text or JSON on stdout; notes and a spinner on stderr


class Ui:
    """Where output goes: results on stdout (text or JSON), notes and progress on stderr."""

    SPINNER = "|/-\\"

    def __init__(self, *, quiet: bool = False, as_json: bool = False, stderr: Any = None):
        self.quiet = quiet
        self.as_json = as_json
        self.stderr = stderr or sys.stderr
        self.spin = not quiet and self.stderr.isatty()

    def emit(self, result: Mapping[str, Any], render: Callable[[Mapping[str, Any]], str]) -> None:
        if self.as_json:
            print(json.dumps(result, indent=2, default=_json_default))
        else:
            print(render(result))

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"onnx-jax: {text}", file=self.stderr)

    @contextlib.contextmanager
    def progress(self, text: str) -> Iterator[None]:
        """A spinner line on stderr while the block runs; only on a terminal and without --quiet."""
        if not self.spin:
            yield
            return
        stop = threading.Event()
        start = time.monotonic()
        frames = [0]

        def spin() -> None:
            while not stop.wait(0.1):
                elapsed = time.monotonic() - start
                self.stderr.write(f"\r{self.SPINNER[frames[0] % 4]} {text} ({elapsed:.0f} s)\033[K")
                self.stderr.flush()
                frames[0] += 1

        thread = threading.Thread(target=spin, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            if frames[0]:
                self.stderr.write("\r\033[K")
                self.stderr.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _shape_text(shape: Sequence[Any] | None) -> str:
    if shape is None:
        return "(unknown rank)"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _number(value: Any) -> float | str:
    """A JSON-safe number: non-finite values become the strings 'nan', 'inf', '-inf'."""
    value = float(value)
    return value if np.isfinite(value) else str(value)


# ---------------------------------------------------------------------------------------------
# Loading a model and making its inputs


@dataclass
class Loaded:
    path: str
    proto: onnx.ModelProto
    base_dir: str | None
    graph: Graph


def load(path: str, ui: Ui) -> Loaded:
    with ui.progress(f"loading {path}"):
        proto, base_dir = load_model(path)
        graph = build_graph(proto, base_dir)
    return Loaded(path, proto, base_dir, graph)


def prepare(loaded: Loaded, device: str, ui: Ui) -> Any:
    """An OnnxJaxRep of the loaded model (ops resolved, weights on the device); compiled on first run."""
    from .backend import prepare_graph

    with ui.progress("resolving ops"):
        try:
            return prepare_graph(loaded.graph, device, registry=REGISTRY)
        except ValueError as e:  # no such device
            raise CliError(str(e)) from None


def parse_dims(specs: Sequence[str]) -> dict[str, int]:
    dims = {}
    for spec in specs or ():
        name, sep, value = spec.partition("=")
        if not sep or not value.isdigit():
            raise CliError(f"--dim {spec!r}: expected NAME=SIZE, e.g. --dim sequence=128")
        dims[name] = int(value)
    return dims


def concrete_shape(info: ValueInfo, batch: int, dims: Mapping[str, int]) -> tuple[int, ...]:
    """The input's declared shape with symbolic dims taken from --dim NAME=SIZE, else --batch."""
    if info.shape is None:
        raise CliError(f"input {info.name!r} declares no shape; give its data with --input {info.name}=FILE.npy")
    return tuple(d if isinstance(d, int) and d > 0 else dims.get(d, batch) if isinstance(d, str) else batch
                 for d in info.shape)


def has_symbolic_dims(inputs: Sequence[ValueInfo]) -> bool:
    return any(not (isinstance(d, int) and d > 0) for i in inputs for d in (i.shape or ()))


def make_inputs(
    graph_inputs: Sequence[ValueInfo], specs: Sequence[str], *, batch: int, dims: Mapping[str, int], seed: int, ui: Ui
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Inputs by name, and where each came from. --input NAME=FILE.npy|random|zeros|ones, or FILE.npz / FILE.npy."""
    by_name = {i.name: i for i in graph_inputs}
    sources: dict[str, str] = {}
    given: dict[str, np.ndarray] = {}
    for spec in specs or ():
        name, sep, what = spec.partition("=")
        if not sep or name not in by_name and os.path.exists(spec):  # a bare file, which may contain '='
            name, what = "", spec
        if not name:
            if what.endswith(".npz"):
                found = _npz_inputs(what, by_name)
                given.update(found)
                sources.update({n: what for n in found})
                continue
            if len(by_name) != 1:
                raise CliError(f"--input {spec!r}: name the input (NAME=FILE); the model's inputs are {list(by_name)}")
            name = next(iter(by_name))
        if name not in by_name:
            raise CliError(f"--input {spec!r}: the model has no input {name!r}; its inputs are {list(by_name)}")
        if what in ("random", "zeros", "ones"):
            sources[name] = what
            given.pop(name, None)
        else:
            given[name] = _read_array(what, name)
            sources[name] = what
    rng = np.random.default_rng(seed)
    arrays = {}
    for info in graph_inputs:
        if info.kind != "tensor":
            raise CliError(f"input {info.name!r} is a {info.kind}; the command line only makes tensor inputs")
        if info.name in given:
            arrays[info.name] = _as_declared(given[info.name], info, ui)
            continue
        how = sources.setdefault(info.name, "random")
        if info.dtype is None:
            raise CliError(f"input {info.name!r} declares no dtype; give its data with --input {info.name}=FILE.npy")
        shape = concrete_shape(info, batch, dims)
        arrays[info.name] = _generate(how, shape, info.dtype, rng)
    return arrays, sources


def _npz_inputs(path: str, by_name: Mapping[str, ValueInfo]) -> dict[str, np.ndarray]:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CliError(f"--input {path}: cannot read: {e}") from None
    found = {}
    for key in data.files:
        name = key.split(":", 1)[1] if key.startswith("input:") else key
        if name in by_name:
            found[name] = data[key]
    if not found:
        raise CliError(f"--input {path}: no array named after an input {list(by_name)} (keys NAME or input:NAME)")
    return found


def _read_array(path: str, name: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise CliError(f"--input {name}={path}: no such file (or use random, zeros, ones)")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CliError(f"--input {name}={path}: cannot read: {e}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = [k for k in data.files if k in (name, f"input:{name}")] or data.files
        if len(keys) != 1:
            raise CliError(f"--input {name}={path}: the npz holds {data.files}; name the array {name!r}")
        return data[keys[0]]
    return data


def _as_declared(value: np.ndarray, info: ValueInfo, ui: Ui) -> np.ndarray:
    """Convert data of a related dtype (float64 for a float32 input) with a note; refuse unrelated ones."""
    if info.dtype is None or value.dtype == info.dtype:
        return value
    if np.can_cast(value.dtype, info.dtype, casting="same_kind"):
        ui.note(f"input {info.name!r}: converting {value.dtype} data to the declared {info.dtype}")
        return value.astype(info.dtype)
    raise CliError(f"input {info.name!r} must have dtype {info.dtype}, the file holds {value.dtype}")


def _generate(how: str, shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    if how == "zeros":
        return np.zeros(shape, dtype)
    if how == "ones":
        return np.ones(shape, dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, RANDOM_INT_HIGH, shape).astype(dtype)
    if np.issubdtype(dtype, np.complexfloating):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if dtype == np.dtype(object):
        raise CliError("string inputs cannot be generated; give them with --input NAME=FILE.npy")
    return rng.standard_normal(shape).astype(dtype)


def describe_inputs(graph_inputs: Sequence[ValueInfo], arrays: Mapping[str, np.ndarray],
                    sources: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        {"name": i.name, "shape": list(arrays[i.name].shape), "dtype": str(arrays[i.name].dtype),
         "source": sources.get(i.name, "random")}
        for i in graph_inputs
    ]


def summarize(name: str, value: Any) -> dict[str, Any]:
    """Name, shape, dtype and min/max/mean (numbers) or the count of true values (bool) of an output."""
    if value is None:
        return {"name": name, "kind": "empty optional"}
    if isinstance(value, list):
        return {"name": name, "kind": "sequence", "length": len(value),
                "items": [summarize(f"{name}[{i}]", v) for i, v in enumerate(value)]}
    value = np.asarray(value)
    info: dict[str, Any] = {"name": name, "shape": list(value.shape), "dtype": str(value.dtype)}
    if value.size and value.dtype == np.bool_:
        info["true"] = int(value.sum())
    elif value.size and (np.issubdtype(value.dtype, np.number) or _is_narrow_float(value.dtype)):
        data = value.astype(np.complex128 if np.iscomplexobj(value) else np.float64)
        data = np.abs(data) if np.iscomplexobj(data) else data
        finite = data[np.isfinite(data)]
        if finite.size:
            info.update(min=_number(finite.min()), max=_number(finite.max()), mean=_number(finite.mean()))
        if finite.size != data.size:
            info["nan"] = int(np.isnan(data).sum())
            info["inf"] = int(np.isinf(data).sum())
    return info


def _is_narrow_float(dtype: np.dtype) -> bool:
    from .dtypes import is_float

    try:
        return is_float(dtype)
    except TypeError:
        return False


def _summary_text(info: Mapping[str, Any], indent: str = "  ") -> str:
    if "kind" in info:
        if info["kind"] == "sequence":
            lines = [f"{indent}{info['name']}: sequence of {info['length']}"]
            return "\n".join(lines + [_summary_text(i, indent + "  ") for i in info["items"]])
        return f"{indent}{info['name']}: {info['kind']}"
    text = f"{indent}{info['name']}: {info['dtype']} {_shape_text(info['shape'])}"
    if "min" in info:
        text += f"  min {_fmt(info['min'])}  max {_fmt(info['max'])}  mean {_fmt(info['mean'])}"
    if "true" in info:
        text += f"  true {info['true']}"
    if info.get("nan") or info.get("inf"):
        text += f"  nan {info['nan']}  inf {info['inf']}"
    return text


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _device_name(args: argparse.Namespace) -> str:
    return "CUDA" if args.device == "gpu" else "CPU"


# ---------------------------------------------------------------------------------------------
# run


def cmd_run(args: argparse.Namespace, ui: Ui) -> int:
    loaded = load(args.model, ui)
    rep = prepare(loaded, _device_name(args), ui)
    inputs, sources = make_inputs(loaded.graph.inputs, args.input, batch=args.batch, dims=parse_dims(args.dim),
                                  seed=args.seed, ui=ui)
    _warn_random_static(rep.program, sources, ui)
    with ui.progress("compiling and running"):
        start = time.perf_counter()
        outputs = rep.run(inputs)
        seconds = time.perf_counter() - start
    result = {
        "model": args.model,
        "device": str(rep.device),
        "inputs": describe_inputs(loaded.graph.inputs, inputs, sources),
        "outputs": [summarize(n, v) for n, v in zip(rep.output_names, outputs)],
        "seconds": seconds,
    }
    if args.out:
        result["out"] = save_outputs(args.out, rep.output_names, outputs)
    ui.emit(result, _render_run)
    return EXIT_OK


def _warn_random_static(program: Program, sources: Mapping[str, str], ui: Ui) -> None:
    for name in program.input_names:
        if name in program.static_names and sources.get(name) in ("random", "zeros", "ones"):
            ui.note(f"input {name!r} fixes shapes in the graph; {sources[name]} data may not be valid for it")


def save_outputs(path: str, names: Sequence[str], outputs: Sequence[Any]) -> str:
    """Outputs to an npz keyed by output name; a sequence's items as NAME[i]; empty optionals are left out."""
    arrays = {}
    for name, value in zip(names, outputs):
        if isinstance(value, list):
            arrays.update({f"{name}[{i}]": np.asarray(v) for i, v in enumerate(value)})
        elif value is not None:
            arrays[name] = np.asarray(value)
    try:
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    except OSError as e:
        raise CliError(f"--out {path}: {e}") from None
    return path


def _render_run(r: Mapping[str, Any]) -> str:
    lines = [f"model {r['model']} on {r['device']}", "inputs:"]
    lines += [f"  {i['name']}: {i['dtype']} {_shape_text(i['shape'])}  ({i['source']})" for i in r["inputs"]]
    lines.append("outputs:")
    lines += [_summary_text(o) for o in r["outputs"]]
    lines.append(f"ran in {r['seconds']:.3f} s (compilation included)")
    if r.get("out"):
        lines.append(f"wrote {r['out']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# check


def classify(node: Node, registry: Registry, functions: Mapping) -> tuple[str, int | None, str]:
    """(status, implementation since-version, reason) of a node: supported, function, or unsupported."""
    opdef = registry.resolve(node.domain, node.op_type, node.opset)
    if opdef is not None:
        return "supported", opdef.since, ""
    domain = node.domain or "ai.onnx"
    if (node.domain, node.op_type) in functions:
        return "function", None, "expanded from the model-local function"
    schema = get_schema(node.op_type, node.domain, node.opset)
    if schema is not None and (schema.has_function or schema.has_context_dependent_function):
        return "function", None, f"expanded from the ONNX function body (schema since {schema.since_version})"
    versions = registry.versions(node.domain, node.op_type)
    if schema is None:
        latest = get_schema(node.op_type, node.domain, 10**6) if node.domain in STANDARD_DOMAINS else None
        if latest is not None:
            first = min(s.since_version for s in onnx.defs.get_all_schemas_with_history()
                        if s.name == node.op_type and s.domain == node.domain)
            return "unsupported", None, f"not defined at {domain} opset {node.opset} (ONNX defines it from {first})"
        if versions:
            return "unsupported", None, f"no implementation at opset {node.opset} (implemented since {list(versions)})"
        custom = "" if node.domain in STANDARD_DOMAINS else f"; {domain} is not a standard ONNX domain"
        return "unsupported", None, f"unknown op: no implementation and no ONNX schema{custom}"
    if versions:
        return "unsupported", None, (
            f"no implementation at opset {node.opset} (schema since {schema.since_version}; "
            f"implemented since {list(versions)})"
        )
    return "unsupported", None, "not implemented"


def function_body(node: Node, functions: Mapping, opsets: Mapping[str, int]) -> Graph | None:
    """The body a function-expanded node runs, when it can be known without input types."""
    local = functions.get((node.domain, node.op_type))
    if local is None:
        schema = get_schema(node.op_type, node.domain, node.opset)
        if schema is None or not schema.has_function:
            return None  # context-dependent bodies depend on the input types: checked when traced
        version = max(v for v in schema.function_opset_versions if v <= node.opset)
        local = onnx.FunctionProto.FromString(schema.get_function_with_opset_version(version))
    try:
        return function_graph(local, node, opsets)
    except OnnxJaxError:
        return None


def check_model(graph: Graph, registry: Registry = REGISTRY) -> dict[str, Any]:
    """Per op type: status and reason; inputs/outputs; how many compiled segments the graph needs."""
    rows: dict[tuple[str, str, int, str], dict[str, Any]] = {}
    plan = {}

    def visit(g: Graph, via: str, depth: int) -> None:
        for node in g.walk():
            status, since, reason = classify(node, registry, graph.functions)
            if via and status == "supported":
                continue  # a function body's supported ops are not the model's own
            if via:
                reason = f"{reason} (inside the function body of {via})"
            row = rows.setdefault((node.domain, node.op_type, node.opset, via), {
                "domain": node.domain or "ai.onnx", "op_type": node.op_type, "opset": node.opset, "since": since,
                "count": 0, "status": status, "reason": reason, "nodes": [],
            })
            row["count"] += 1
            row["nodes"].append(node.name)
            if not via:
                opdef = resolve_node(node, registry, graph.functions)
                if opdef is not None:
                    plan[node] = opdef
            if status == "function" and depth < 8:
                body = function_body(node, graph.functions, g.opsets)
                if body is not None:
                    visit(body, node.op_type, depth + 1)

    visit(graph, "", 0)
    supported = all(r["status"] != "unsupported" for r in rows.values())
    breaks, inner_host = _graph_breaks(graph, plan)
    needs_static = static_names(graph, plan) if supported else frozenset()
    return {
        "opsets": {(d or "ai.onnx"): v for d, v in graph.opsets.items()},
        "inputs": [_value_json(i, i.name in needs_static) for i in graph.inputs],
        "outputs": [_value_json(o, False) for o in graph.outputs],
        "ops": sorted(rows.values(), key=lambda r: (r["status"] != "unsupported", r["domain"], r["op_type"])),
        "nodes": sum(1 for _ in graph.walk()),
        "segments": len(breaks) + 1,
        "graph_breaks": breaks,
        "subgraph_host_ops": inner_host,
        "supported": supported,
    }


def _value_json(info: ValueInfo, static: bool) -> dict[str, Any]:
    value = {"name": info.name, "dtype": None if info.dtype is None else str(info.dtype),
             "shape": None if info.shape is None else list(info.shape), "kind": info.kind}
    if static:
        value["static"] = True
    return value


def _graph_breaks(graph: Graph, plan: Mapping[Node, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Top-level host ops fed run-time data (each splits the executable), and host ops inside subgraphs.

    Mirrors how values become static while tracing: initializers, shape-only ops, and foldable ops whose
    inputs are all static. Nodes with subgraphs count as run-time (they may read run-time values by name).
    """
    static = set(graph.initializers)
    breaks = []
    for node in graph.nodes:
        opdef = plan.get(node)
        all_static = all(n in static for n in node.inputs if n)
        values = [s for v in node.attrs.values() for s in (v if isinstance(v, tuple) else (v,))]
        has_subgraph = any(isinstance(s, Graph) for s in values)
        if opdef is not None and opdef.runs_on_host(node) and not all_static:
            breaks.append({"node": node.name, "op_type": node.op_type})
        if opdef is not None and (opdef.shape_only or (opdef.fold and all_static and not has_subgraph)):
            static.update(n for n in node.outputs if n)
    top = set(graph.nodes)
    inner = [{"node": n.name, "op_type": n.op_type} for n, d in plan.items() if d.runs_on_host(n) and n not in top]
    return breaks, inner


def cmd_check(args: argparse.Namespace, ui: Ui) -> int:
    loaded = load(args.model, ui)
    with ui.progress("resolving ops"):
        report = check_model(loaded.graph, REGISTRY)
    proto = loaded.proto
    result = {"model": args.model, "ir_version": proto.ir_version,
              "producer": f"{proto.producer_name} {proto.producer_version}".strip(), **report}
    ui.emit(result, _render_check)
    return EXIT_OK if report["supported"] else EXIT_FAILED


def _render_check(r: Mapping[str, Any]) -> str:
    opsets = ", ".join(f"{d} {v}" for d, v in r["opsets"].items())
    lines = [f"model {r['model']} (ir {r['ir_version']}, opset {opsets}"
             + (f", producer {r['producer']})" if r["producer"] else ")")]
    for title, values in (("inputs", r["inputs"]), ("outputs", r["outputs"])):
        lines.append(f"{title}:")
        for v in values:
            kind = (v["dtype"] or "?") if v["kind"] == "tensor" else v["kind"]
            extra = "  (value fixes shapes: each new value compiles again)" if v.get("static") else ""
            lines.append(f"  {v['name']}: {kind} {_shape_text(v['shape']) if v['kind'] == 'tensor' else ''}".rstrip()
                         + extra)
    op_types = len({(o["domain"], o["op_type"]) for o in r["ops"]})
    lines.append(f"ops ({r['nodes']} nodes, {op_types} op types):")
    rows = []
    for o in r["ops"]:
        status = {"supported": "supported", "function": "supported"}.get(o["status"], "NOT SUPPORTED")
        detail = o["reason"] if o["status"] != "supported" else ""
        rows.append([o["domain"], o["op_type"], o["opset"], o["since"] or "-", o["count"],
                     f"{status}: {detail}" if detail else status])
    lines.append(_table(["domain", "op", "opset", "impl", "count", "status"], rows))
    if r["segments"] == 1:
        lines.append("segments: 1 (one XLA executable, no graph breaks)")
    else:
        names = ", ".join(f"{b['node']} ({b['op_type']})" for b in r["graph_breaks"])
        lines.append(f"segments: {r['segments']} (graph breaks at host ops fed run-time data: {names})")
    if r["subgraph_host_ops"]:
        names = ", ".join(f"{b['node']} ({b['op_type']})" for b in r["subgraph_host_ops"])
        lines.append(f"note: data-dependent ops inside subgraphs fail if fed run-time data: {names}")
    missing = [o for o in r["ops"] if o["status"] == "unsupported"]
    if missing:
        lines.append(f"result: {len(missing)} op(s) not supported: " + ", ".join(
            f"{o['domain']}::{o['op_type']}-{o['opset']}" for o in missing))
    else:
        lines.append("result: every op is supported")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# compare


@dataclass(frozen=True)
class Difference:
    max_abs: float
    max_rel: float  # max|ours - ref| / max|ref|: relative to the value's magnitude
    tolerance: float
    reason: str = ""  # why the values cannot be compared number by number (shape, dtype, nan)

    @property
    def ok(self) -> bool:
        return not self.reason and self.max_abs <= self.tolerance

    def json(self) -> dict[str, Any]:
        value = {"max_abs_err": _number(self.max_abs), "max_rel_err": _number(self.max_rel),
                 "tolerance": _number(self.tolerance), "match": self.ok}
        return {**value, "reason": self.reason} if self.reason else value


def difference(ours: Any, ref: Any, rtol: float, atol: float) -> Difference:
    """How far our value is from the reference; it matches when max|ours - ref| <= atol + rtol * max|ref|."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    if ours.shape != ref.shape:
        return Difference(np.inf, np.inf, atol, f"shape {ours.shape} != {ref.shape}")
    if ours.dtype != ref.dtype:
        return Difference(np.inf, np.inf, atol, f"dtype {ours.dtype} != {ref.dtype}")
    if ref.dtype == np.dtype(object):
        equal = bool(np.all(ours == ref))
        return Difference(0.0 if equal else np.inf, 0.0 if equal else np.inf, 0.0, "" if equal else "values differ")
    if ours.size == 0:
        return Difference(0.0, 0.0, atol)
    kind = np.complex128 if np.iscomplexobj(ref) else np.float64
    a, b = ours.astype(kind), ref.astype(kind)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if np.any(nan_a != nan_b):
        return Difference(np.inf, np.inf, atol, f"nan at {int((nan_a != nan_b).sum())} position(s) of only one side")
    same = (a == b) | (nan_a & nan_b)
    diff = np.where(same, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)  # inf against a finite value
    magnitude = np.abs(b[np.isfinite(b)])
    scale = float(magnitude.max()) if magnitude.size else 0.0
    max_abs = float(diff.max())
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf)
    return Difference(max_abs, rel, atol + rtol * scale)


def _ort_session(model: Any, device: str, *, optimize: bool = True) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise CliError("this command needs onnxruntime (pip install onnxruntime)") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    providers = ["CPUExecutionProvider"]
    if device == "CUDA" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(model, options, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types
        raise CliError(f"onnxruntime cannot load the model: {_first_line(e)}") from None


def _ort_run(session: Any, inputs: Mapping[str, np.ndarray]) -> list[Any]:
    try:
        return session.run(None, dict(inputs))
    except Exception as e:
        raise CliError(f"onnxruntime failed to run the model: {_first_line(e)}") from None


def with_outputs(proto: onnx.ModelProto, base_dir: str | None, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of the model (external data loaded) that also returns `names`; the original is left alone."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    if base_dir is not None:
        from onnx.external_data_helper import load_external_data_for_model, uses_external_data

        if any(uses_external_data(t) for t in copy.graph.initializer):
            load_external_data_for_model(copy, base_dir)
    present = {o.name for o in copy.graph.output}
    copy.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in present)
    return copy


def evaluate_all(program: Program, inputs: Mapping[str, np.ndarray], device: Any) -> dict[str, Any]:
    """Every top-level value of the graph by name, evaluated eagerly (op by op) under x64, host ops included."""
    import jax

    graph = program.graph
    with x64():
        params = jax.device_put(program.params, device)
        traced = {n: jax.device_put(v, device) for n, v in inputs.items() if n not in program.static_names}
        env = {**program.constants, **params, **inputs, **traced}
        stop = program.evaluate_from(graph, env, 0)
        while stop is not None:  # a host op fed run-time data: run it on concrete values, then go on
            program.run_host(graph.nodes[stop], env)
            stop = program.evaluate_from(graph, env, stop + 1)
    return env


def first_divergence(
    graph: Graph, ours: Mapping[str, Any], theirs: Mapping[str, Any], rtol: float, atol: float
) -> dict[str, Any] | None:
    """The first node (in graph order) with an output that differs from onnxruntime's beyond tolerance."""
    for node in graph.nodes:
        for name in node.outputs:
            if not name or name not in ours or name not in theirs:
                continue
            diff = difference(ours[name], theirs[name], rtol, atol)
            if not diff.ok:
                inputs = [
                    {"name": n, **difference(ours[n], theirs[n], rtol, atol).json()}
                    for n in node.inputs if n in ours and n in theirs
                ]
                return {"node": node.name, "op_type": node.op_type, "output": name, **diff.json(), "inputs": inputs}
    return None


def cmd_compare(args: argparse.Namespace, ui: Ui) -> int:
    loaded = load(args.model, ui)
    reference = load(args.reference, ui) if args.reference else loaded
    rep = prepare(loaded, _device_name(args), ui)
    graph = loaded.graph
    inputs, sources = make_inputs(graph.inputs, args.input, batch=args.batch, dims=parse_dims(args.dim),
                                  seed=args.seed, ui=ui)
    _warn_random_static(rep.program, sources, ui)
    ref_inputs = _reference_inputs(reference, inputs)
    with ui.progress("compiling and running onnx_jax"):
        ours = dict(zip(rep.output_names, rep.run(inputs)))
    with ui.progress("running onnxruntime"):
        model = with_outputs(reference.proto, reference.base_dir, ()).SerializeToString()
        session = _ort_session(model, _device_name(args))
        theirs = dict(zip([o.name for o in session.get_outputs()], _ort_run(session, ref_inputs)))
    outputs = []
    for name in rep.output_names:
        if name not in theirs:
            raise CliError(f"the reference model {args.reference} has no output {name!r}")
        ref = np.asarray(theirs[name])
        diff = difference(ours[name], ref, args.rtol, args.atol)
        outputs.append({"name": name, "shape": list(ref.shape), "dtype": str(ref.dtype), **diff.json()})
    match = all(o["match"] for o in outputs)
    result: dict[str, Any] = {
        "model": args.model, "reference": args.reference or args.model, "rtol": args.rtol, "atol": args.atol,
        "inputs": describe_inputs(graph.inputs, inputs, sources), "outputs": outputs, "match": match,
    }
    if not match:
        result["first_divergence"], result["divergence_note"] = _locate(loaded, reference, rep, inputs, args, ui)
    ui.emit(result, _render_compare)
    return EXIT_OK if match else EXIT_FAILED


def _reference_inputs(reference: Loaded, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    missing = [i.name for i in reference.graph.inputs if i.name not in inputs]
    if missing:
        raise CliError(f"the reference model {reference.path} takes inputs {missing} that the model does not")
    return {i.name: inputs[i.name] for i in reference.graph.inputs}


def _locate(loaded: Loaded, reference: Loaded, rep: Any, inputs: Mapping[str, np.ndarray],
            args: argparse.Namespace, ui: Ui) -> tuple[dict[str, Any] | None, str]:
    """Evaluate every intermediate value in both runtimes and find the first node that diverges."""
    with ui.progress("evaluating intermediate values in onnx_jax"):
        env = evaluate_all(rep.program, inputs, rep.device)
    theirs_produced = {n for node in reference.graph.nodes for n in node.outputs if n}
    produced = [n for node in loaded.graph.nodes for n in node.outputs if n in theirs_produced]
    names = [n for n in dict.fromkeys(produced) if n in env and hasattr(env[n], "shape")]  # tensors, not sequences
    ours = {n: np.asarray(env[n]) for n in names}
    with ui.progress("evaluating intermediate values in onnxruntime"):
        try:
            copy = with_outputs(reference.proto, reference.base_dir, names)
            session = _ort_session(copy.SerializeToString(), _device_name(args), optimize=False)
            values = _ort_run(session, _reference_inputs(reference, inputs))
            theirs = dict(zip([o.name for o in session.get_outputs()], values))
        except CliError as e:
            return None, f"could not get intermediate values from onnxruntime: {e}"
    found = first_divergence(loaded.graph, ours, theirs, args.rtol, args.atol)
    if found is None:
        return None, ("every intermediate value matches when evaluated op by op; "
                      "the difference appears only in the compiled executable")
    return found, ""


def _render_compare(r: Mapping[str, Any]) -> str:
    against = "" if r["reference"] == r["model"] else f" on {r['reference']}"
    lines = [f"model {r['model']}: onnx_jax vs onnxruntime{against} "
             f"(match: max|diff| <= {r['atol']:g} + {r['rtol']:g} * max|ref|)"]
    rows = [[o["name"], o["dtype"], _shape_text(o["shape"]), _fmt(o["max_abs_err"]), _fmt(o["max_rel_err"]),
             _fmt(o["tolerance"]), "ok" if o["match"] else "MISMATCH" + (f": {o['reason']}" if "reason" in o else "")]
            for o in r["outputs"]]
    lines.append(_table(["output", "dtype", "shape", "max abs err", "max rel err", "tolerance", ""], rows))
    if r["match"]:
        lines.append("result: every output matches")
        return "\n".join(lines)
    found = r.get("first_divergence")
    if found:
        lines.append(f"first diverging node: {found['node']!r} ({found['op_type']}), output {found['output']!r}: "
                     f"max abs err {_fmt(found['max_abs_err'])} > tolerance {_fmt(found['tolerance'])}"
                     + (f" ({found['reason']})" if "reason" in found else ""))
        for i in found["inputs"]:
            lines.append(f"  input {i['name']!r}: max abs err {_fmt(i['max_abs_err'])} "
                         f"({'matches' if i['match'] else 'differs'})")
    elif r.get("divergence_note"):
        lines.append(f"first diverging node: not found: {r['divergence_note']}")
    lines.append("result: MISMATCH")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# bench


def _timings(call: Callable[[], Any], runs: int) -> dict[str, float]:
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    for _ in range(BENCH_WARMUP_RUNS):
        call()
    times = []
    faults = _page_faults()
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    timing = {"first_call_s": first, "median_ms": float(np.median(times)) * 1e3,
              "p90_ms": float(np.percentile(times, 90)) * 1e3, "min_ms": float(np.min(times)) * 1e3}
    if faults is not None:
        timing["page_faults_per_run"] = (_page_faults() - faults) / runs
    return timing


def _page_faults() -> int | None:
    """The process's minor page faults so far (None where the platform does not count them)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def cmd_bench(args: argparse.Namespace, ui: Ui) -> int:
    loaded = load(args.model, ui)
    rep = prepare(loaded, _device_name(args), ui)
    graph = loaded.graph
    batches = list(dict.fromkeys(args.batch))
    if not has_symbolic_dims(graph.inputs) and (len(batches) > 1 or batches != [1]):
        ui.note("the model's input shapes are fixed: --batch has no effect")
        batches = batches[:1]
    session = None
    if not args.no_ort:
        start = time.perf_counter()
        with ui.progress("loading the model in onnxruntime"):
            session = _ort_session(loaded.path, _device_name(args))
        ort_load = time.perf_counter() - start
    results = []
    for batch in batches:
        inputs, _ = make_inputs(graph.inputs, args.input, batch=batch, dims=parse_dims(args.dim), seed=args.seed,
                                ui=ui)
        items = batch if has_symbolic_dims(graph.inputs) else 1
        with ui.progress(f"batch {batch}: onnx_jax (compiling, then {args.runs} runs)"):
            ours = _timings(lambda: rep.run(inputs), args.runs)
        ours["throughput"] = items / (ours["median_ms"] / 1e3)
        entry: dict[str, Any] = {"batch": batch, "items_per_run": items, "onnx_jax": ours}
        if session is not None:
            with ui.progress(f"batch {batch}: onnxruntime ({args.runs} runs)"):
                theirs = _timings(lambda: _ort_run(session, inputs), args.runs)
            theirs["throughput"] = items / (theirs["median_ms"] / 1e3)
            theirs["session_s"] = ort_load
            entry["onnxruntime"] = theirs
            entry["ratio"] = ours["median_ms"] / theirs["median_ms"]
        results.append(entry)
    result = {"model": args.model, "device": str(rep.device), "runs": args.runs, "results": results}
    ui.emit(result, _render_bench)
    return EXIT_OK


def _render_bench(r: Mapping[str, Any]) -> str:
    lines = [f"model {r['model']} on {r['device']}, {r['runs']} timed runs (after {BENCH_WARMUP_RUNS} warm-up)"]
    rows = []
    for e in r["results"]:
        for runtime in ("onnx_jax", "onnxruntime"):
            t = e.get(runtime)
            if t is None:
                continue
            faults = t.get("page_faults_per_run")
            rows.append([e["batch"], runtime, f"{t['first_call_s']:.3f}", f"{t['median_ms']:.3f}",
                         f"{t['p90_ms']:.3f}", f"{t['throughput']:.1f}", "" if faults is None else f"{faults:.0f}"])
    lines.append(_table(["batch", "runtime", "first call s", "median ms", "p90 ms", "items/s", "faults/run"], rows))
    for e in r["results"]:
        if "ratio" in e:
            lines.append(f"batch {e['batch']}: onnx_jax / onnxruntime median latency = {e['ratio']:.2f}")
    lines.append("first call: onnx_jax compiles on it; onnxruntime's session was built before it")
    faults = max((e["onnx_jax"].get("page_faults_per_run", 0) for e in r["results"]), default=0)
    if (faults >= PAGE_FAULT_HINT and sys.platform.startswith("linux")
            and "glibc.malloc.hugetlb" not in os.environ.get("GLIBC_TUNABLES", "")):
        lines.append(f"onnx_jax page-faulted {faults:.0f} times per run (XLA allocates its temporaries afresh and\n"
                     "the C library maps large blocks from the kernel each time): run with\n"
                     "GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (transparent huge pages) to cut this; see docs/faq.md")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# export


def cmd_export(args: argparse.Namespace, ui: Ui) -> int:
    import jax

    from .functional import to_jax

    loaded = load(args.model, ui)
    dims = parse_dims(args.dim)
    scope = jax.export.SymbolicScope()
    specs = []
    for info in loaded.graph.inputs:
        if info.kind != "tensor" or info.dtype is None:
            raise CliError(f"input {info.name!r}: export needs tensor inputs with a declared dtype")
        if args.symbolic and info.shape is not None:
            shape = jax.export.symbolic_shape(_symbolic_spec(info, dims, len(specs)), scope=scope)
        else:
            shape = concrete_shape(info, args.batch, dims)
        specs.append(jax.ShapeDtypeStruct(shape, info.dtype))
    platforms = args.platform or ["cuda" if args.device == "gpu" else "cpu"]
    with ui.progress("tracing and lowering"):
        fn, params = to_jax(loaded.path, fold_weights=True)  # weights become constants: params is empty
        with x64():
            exported = jax.export.export(jax.jit(lambda *xs: fn(params, *xs)), platforms=platforms)(*specs)
            data = exported.serialize()
    try:
        Path(args.output).write_bytes(bytes(data))
    except OSError as e:
        raise CliError(f"-o {args.output}: {e}") from None
    result = {
        "model": args.model, "output": args.output, "bytes": len(data), "platforms": list(exported.platforms),
        "inputs": [{"name": i.name, "shape": _dims_json(s.shape), "dtype": str(s.dtype)}
                   for i, s in zip(loaded.graph.inputs, specs)],
        "outputs": [{"name": o.name, "shape": _dims_json(a.shape), "dtype": str(a.dtype)}
                    for o, a in zip(loaded.graph.outputs, exported.out_avals)],
    }
    ui.emit(result, _render_export)
    return EXIT_OK


def _dims_json(shape: Sequence[Any]) -> list[int | str]:
    return [d if isinstance(d, int) else str(d) for d in shape]


def _symbolic_spec(info: ValueInfo, dims: Mapping[str, int], position: int) -> str:
    """jax.export.symbolic_shape text for an input: named dims become symbols (one per name), unnamed ones fresh."""
    parts = []
    for axis, d in enumerate(info.shape):
        if isinstance(d, int) and d > 0:
            parts.append(str(d))
        elif isinstance(d, str) and d in dims:
            parts.append(str(dims[d]))
        elif isinstance(d, str):
            parts.append(re.sub(r"\W", "_", d if d[:1].isalpha() else f"d_{d}"))
        else:
            parts.append(f"d{position}_{axis}")
    return ", ".join(parts)


def _render_export(r: Mapping[str, Any]) -> str:
    lines = [f"wrote {r['output']} ({r['bytes']} bytes, platforms {', '.join(r['platforms'])})", "inputs:"]
    lines += [f"  {i['name']}: {i['dtype']} {_shape_text(i['shape'])}" for i in r["inputs"]]
    lines.append("outputs:")
    lines += [f"  {o['name']}: {o['dtype']} {_shape_text(o['shape'])}" for o in r["outputs"]]
    lines.append("load it with: jax.export.deserialize(open(PATH, 'rb').read()).call(*inputs)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# ops: the operator table


PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXPECTED_FAILURES = PROJECT_ROOT / "conformance" / "expected_failures.txt"
_EXPANDED = re.compile(r"_expanded(_ver\d+)?$")


def backend_test_index(ui: Ui) -> dict[str, list[str]]:
    """Official node test name (without _cpu) -> [domain, op_type]; built once per onnx version and cached.

    Building it runs onnx's test-case generators (tens of seconds), so the result is kept in
    $XDG_CACHE_HOME/onnx_jax (or ~/.cache/onnx_jax). `_expanded` variants count for the op they expand.
    """
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "onnx_jax"
    cache = cache_dir / f"backend-node-tests-onnx-{onnx.__version__}.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    import warnings

    with ui.progress("indexing the ONNX backend node tests (once per onnx version)"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.loader import load_node_model_tests

        cases = load_node_model_tests()
    ops = {c.name: {(n.domain, n.op_type) for n in c.model.graph.node} for c in cases}
    index = {}
    for name, found in ops.items():
        base = _EXPANDED.sub("", name)
        if base != name and len(ops.get(base, ())) == 1:
            found = ops[base]
        if len(found) == 1:
            domain, op_type = next(iter(found))
            index[name] = ["" if domain == "ai.onnx" else domain, op_type]
    with contextlib.suppress(OSError):
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cache_dir, delete=False, suffix=".tmp") as f:
            json.dump(index, f)
        os.replace(f.name, cache)
    return index


def read_expected_failures(path: Path) -> set[str] | None:
    """Names of the known failing official tests on CPU, without the _cpu suffix (the table counts CPU
    conformance; a GPU's own failures are listed as _cuda); None when the file is absent."""
    try:
        text = path.read_text()
    except OSError:
        return None
    names = (line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {name.removesuffix("_cpu") for name in names if name.endswith("_cpu")}


def operator_table(
    registry: Registry, tests: Mapping[str, Sequence[str]] | None, failing: set[str] | None
) -> dict[str, Any]:
    """Registered ops with their since-versions and official test counts; the standard ops that are not registered."""
    per_op: dict[tuple[str, str], list[str]] = {}
    for name, (domain, op_type) in (tests or {}).items():
        per_op.setdefault((domain, op_type), []).append(name)

    def counts(key: tuple[str, str]) -> dict[str, Any]:
        if tests is None:
            return {}
        names = per_op.get(key, [])
        entry: dict[str, Any] = {"tests": len(names)}
        if failing is not None:
            entry["failing"] = sum(1 for n in names if n in failing)
            entry["passing"] = len(names) - entry["failing"]
        return entry

    keys = sorted({(o.domain, o.op_type) for o in registry}, key=lambda k: (k[0], k[1].lower()))
    ops = [{"domain": d or "ai.onnx", "op_type": t, "since": list(registry.versions(d, t)), **counts((d, t))}
           for d, t in keys]
    registered = set(keys)
    missing = []
    for schema in sorted(onnx.defs.get_all_schemas(), key=lambda s: (s.domain, s.name.lower())):
        key = ("" if schema.domain == "ai.onnx" else schema.domain, schema.name)
        if key in registered or key[0] not in STANDARD_DOMAINS | {"ai.onnx.preview"}:
            continue
        runs = "function body" if schema.has_function or schema.has_context_dependent_function else "not supported"
        if schema.deprecated:
            runs += f" (deprecated in opset {schema.since_version})"
        missing.append({"domain": key[0] or "ai.onnx", "op_type": schema.name, "latest_since": schema.since_version,
                        "runs": runs, **counts(key)})
    return {"onnx_version": onnx.__version__, "ops": ops, "not_registered": missing,
            "expected_failures": None if failing is None else str(EXPECTED_FAILURES.relative_to(PROJECT_ROOT))}


def cmd_ops(args: argparse.Namespace, ui: Ui) -> int:
    tests = None if args.no_tests else backend_test_index(ui)
    failing = None if args.no_tests else read_expected_failures(Path(args.expectations))
    table = operator_table(REGISTRY, tests, failing)
    if args.markdown and not args.json:
        print(_render_ops_markdown(table), end="")
    else:
        ui.emit(table, _render_ops)
    return EXIT_OK


def _test_cells(o: Mapping[str, Any]) -> list[str]:
    if "tests" not in o:
        return []
    if "passing" not in o:
        return [str(o["tests"])]
    return [str(o["tests"]), str(o["passing"])]


def _test_headers(table: Mapping[str, Any]) -> list[str]:
    sample = (table["ops"] or table["not_registered"] or [{}])[0]
    return ["official tests", "passing"][: len(_test_cells(sample))]


def _render_ops(t: Mapping[str, Any]) -> str:
    headers = ["domain", "op", "since"] + _test_headers(t)
    rows = [[o["domain"], o["op_type"], ", ".join(map(str, o["since"]))] + _test_cells(o) for o in t["ops"]]
    lines = [f"{len(t['ops'])} registered ops (onnx {t['onnx_version']} schemas)", _table(headers, rows)]
    missing = t["not_registered"]
    lines.append(f"{len(missing)} standard ops not registered:")
    lines.append(_table(["domain", "op", "latest since", "runs as"] + _test_headers(t)[:1],
                        [[o["domain"], o["op_type"], o["latest_since"], o["runs"]] + _test_cells(o)[:1]
                         for o in missing]))
    return "\n".join(lines)


def _markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _render_ops_markdown(t: Mapping[str, Any]) -> str:
    headers = _test_headers(t)
    lines = [
        "# Operators",
        "",
        f"Generated by `onnx-jax ops --markdown > docs/operators.md` from the op registry, with onnx "
        f"{t['onnx_version']}'s schemas. Do not edit by hand.",
        "",
        "*since*: the opset versions where an implementation starts; a model's opset is mapped to the op's "
        "schema `since_version` and the newest implementation at or below it runs.",
    ]
    if headers:
        lines += [
            "",
            "*official tests*: the op's node tests in the ONNX backend suite (`_expanded` variants included)"
            + ("; *passing*: those not listed in `conformance/expected_failures.txt`." if len(headers) > 1 else
               "; passing counts appear once `conformance/expected_failures.txt` is recorded."),
        ]
    by_domain: dict[str, list[Mapping[str, Any]]] = {}
    for o in t["ops"]:
        by_domain.setdefault(o["domain"], []).append(o)
    for domain, ops in by_domain.items():
        lines += ["", f"## {domain} ({len(ops)} op{'s' if len(ops) != 1 else ''})", ""]
        lines += _markdown_table(["op", "since", *headers],
                                 [[o["op_type"], ", ".join(map(str, o["since"])), *_test_cells(o)] for o in ops])
    missing = t["not_registered"]
    lines += ["", f"## Standard ops without an implementation ({len(missing)})", "",
              "*function body*: models still run them, expanded from the function body in the op's ONNX schema, "
              "when the ops of that body are supported.", ""]
    lines += _markdown_table(["domain", "op", "latest since", "runs as", *headers[:1]],
                             [[o["domain"], o["op_type"], o["latest_since"], o["runs"], *_test_cells(o)[:1]]
                              for o in missing])
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Arguments and the entry point


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _add_global(common, suppress=True)  # also accepted after the subcommand

    parser = argparse.ArgumentParser(
        prog="onnx-jax",
        description="Run, check, compare, benchmark and export ONNX models with onnx_jax (ONNX on JAX/XLA).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_global(parser, suppress=False)
    parser.add_argument("--version", action="version", version=f"onnx-jax {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, fn: Callable, help_text: str, epilog: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(fn=fn)
        return p

    def model_inputs(p: argparse.ArgumentParser, batch_many: bool = False) -> None:
        p.add_argument("model", help="path to the .onnx file")
        p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=SOURCE",
                       help="an input's data: NAME=FILE.npy, NAME=random (the default), NAME=zeros, NAME=ones; "
                            "or FILE.npz holding several inputs (keys NAME or input:NAME); repeatable")
        if batch_many:
            p.add_argument("--batch", type=_positive, nargs="+", default=[1], metavar="N",
                           help="size(s) for symbolic/unknown dims, one benchmark each (default 1)")
        else:
            p.add_argument("--batch", type=_positive, default=1, metavar="N",
                           help="size for symbolic/unknown dims (default 1)")
        p.add_argument("--dim", action="append", default=[], metavar="NAME=SIZE",
                       help="size of one named symbolic dim (overrides --batch for it); repeatable")
        p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")

    p = command("run", cmd_run, "run a model on given or generated inputs and summarize its outputs",
                "random inputs: floats ~ N(0, 1), integers in [0, 10), bools fair coins; dtypes from the model.")
    model_inputs(p)
    p.add_argument("--out", "-o", metavar="FILE.npz", help="write the outputs to an npz, keyed by output name")

    p = command("check", cmd_check, "list the model's ops and whether onnx_jax supports each; inputs and outputs",
                "exit code 0 when every op is supported, 1 otherwise.")
    p.add_argument("model", help="path to the .onnx file")

    p = command("compare", cmd_compare,
                "compare onnx_jax with onnxruntime; on a mismatch, find the first diverging node",
                "a value matches when max|onnx_jax - onnxruntime| <= atol + rtol * max|onnxruntime| "
                "(relative to the\nvalue's magnitude). On a mismatch every intermediate value is evaluated in both "
                "(onnx_jax op by op,\nonnxruntime without graph optimizations) to name the first node whose output "
                "differs.\nexit code 0 when every output matches, 1 otherwise.")
    model_inputs(p)
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help=f"relative tolerance (default {DEFAULT_RTOL:g})")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL, help=f"absolute tolerance (default {DEFAULT_ATOL:g})")
    p.add_argument("--reference", metavar="MODEL",
                   help="run onnxruntime on this model instead (same input and value names): e.g. the original of "
                        "an edited or optimized model")

    p = command("bench", cmd_bench, "time compilation and latency, against onnxruntime",
                f"each batch: the first call (onnx_jax compiles there), {BENCH_WARMUP_RUNS} warm-up calls, then --runs "
                "timed calls;\nthroughput counts --batch items per call for models with symbolic dims, else 1.")
    model_inputs(p, batch_many=True)
    p.add_argument("--runs", type=_positive, default=DEFAULT_BENCH_RUNS,
                   help=f"timed runs (default {DEFAULT_BENCH_RUNS})")
    p.add_argument("--no-ort", action="store_true", help="skip onnxruntime")

    p = command("export", cmd_export, "serialize a jax.export artifact of the model (weights folded in)",
                "by default the artifact has concrete input shapes: symbolic dims take --dim / --batch.\n"
                "--symbolic keeps the model's named dims symbolic (shape polymorphism; experimental: it works where\n"
                "onnx_jax folds the model's shape arithmetic symbolically, and fails with the node's name where not).\n"
                "Inputs whose values fix shapes (a Reshape target given as an input) cannot be exported.\n"
                "load it: exp = jax.export.deserialize(open('model.jax', 'rb').read()); exp.call(x)")
    p.add_argument("model", help="path to the .onnx file")
    p.add_argument("--output", "-o", required=True, metavar="FILE", help="where to write the serialized artifact")
    p.add_argument("--batch", type=_positive, default=1, metavar="N", help="size for symbolic/unknown dims (default 1)")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=SIZE", help="size of one named symbolic dim")
    p.add_argument("--symbolic", action="store_true",
                   help="keep symbolic dims symbolic (one artifact for every batch size; experimental)")
    p.add_argument("--platform", action="append", choices=["cpu", "cuda", "rocm", "tpu"],
                   help="platform(s) to lower for (default: --device's); repeatable")

    p = command("ops", cmd_ops, "the operator table: registered ops, since-versions, official test counts",
                "official test counts index onnx's backend node tests once per onnx version (slow the first time;\n"
                "cached under ~/.cache/onnx_jax); --no-tests skips them.")
    p.add_argument("--markdown", action="store_true", help="print a Markdown page (docs/operators.md)")
    p.add_argument("--no-tests", action="store_true", help="leave out the official test counts")
    p.add_argument("--expectations", default=str(EXPECTED_FAILURES), metavar="FILE",
                   help="known failing official tests (default: conformance/expected_failures.txt)")
    return parser


def _add_global(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--device, --quiet, --json; on the subcommands their defaults are suppressed so the main parser's stand."""

    def value(v: Any) -> Any:
        return argparse.SUPPRESS if suppress else v

    parser.add_argument("--device", choices=["cpu", "gpu"], default=value("cpu"), help="where to run (default cpu)")
    parser.add_argument("--quiet", "-q", action="store_true", default=value(False),
                        help="no progress line and no notes on stderr")
    parser.add_argument("--json", action="store_true", default=value(False), help="machine-readable output on stdout")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _version() -> str:
    from . import __version__

    return __version__


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """The `onnx-jax` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    ui = Ui(quiet=args.quiet, as_json=args.json)
    if args.device == "cpu" and argv is None:  # a program of its own; callers passing argv keep their JAX config
        import jax

        with contextlib.suppress(RuntimeError):  # backends already initialized by an embedding program
            jax.config.update("jax_platforms", "cpu")
    try:
        return args.fn(args, ui)
    except (OnnxJaxError, CliError) as e:
        kind = "" if isinstance(e, CliError) else f"{type(e).__name__}: "
        print(f"onnx-jax: error: {kind}{_first_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. piped into head
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK


__all__ = ["CliError", "build_parser", "check_model", "difference", "first_divergence", "main", "operator_table"]
