"""The onnx.backend API: prepare a model once, run it cheaply many times."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import hashlib
import math
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import onnx
from jax.experimental import checkify
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from . import batching, host_numpy
from .cache import (
    cache_dir,
    code_digest,
    discard_executable,
    graph_digest,
    load_executable,
    store_executable,
)
from .compiler import HostValue, Program, is_static
from .dtypes import check_precision, is_float, x64
from .errors import InvalidInputError, OnnxJaxError
from .graph import Graph, ModelLike, ValueInfo, read_graph
from .optimize import optimize as optimize_graph
from .registry import REGISTRY, Registry

DEFAULT_CACHE_SIZE = 32  # compiled executables kept per prepared model (one per input signature)
# inputs up to this size that share a dtype reach the executable as one buffer: each array JAX passes in costs
# ~1.7 us a call (eight int64 scalars: 20 -> 9 us), more than copying a few kilobytes together
PACKED_INPUT_BYTES = 4096
# in the steady state, inputs up to this many bytes a call are copied into host buffers that the executable's
# device arrays use in place: a numpy array passed to JAX costs ~1.4 us more than a device array, copying a few
# kilobytes ~0.3 us
STAGED_INPUT_BYTES = 16384
# float initializers up to this many elements (but convolution filters) are compiled in as constants, not arguments:
# scalars (a Pow's exponent) and short vectors, such as a rotary embedding's inverse frequencies, whose cos/sin tables
# then fold at trace time instead of being computed in every layer on every call (LLaMA's legacy export at batch 1
# 0.82-0.92x)
SMALL_CONSTANT = 64
# a model's weights are compiled in too, but for convolutions' filters, where they take at most this much: XLA then
# lays them out for their dots, and each weight no longer passed costs nothing a call (~0.4 us per argument; LSTM
# and tiny GPT-2 models 0.76-0.87x of the time, docs/performance.md). Larger ones would lengthen compiles for
# nothing measurable (BERT, ViT: level).
CONSTANT_WEIGHT_BYTES = 4 << 20
# whole-graph executables this small (XLA's cost analysis, dots in loops counted per iteration) run on a CPU client of
# their own whose thread pool has one thread: on two cores XLA splits their microsecond kernels across its pool, and
# each hand-off to an idle core cost 10-30 us on a VM (mnist-8 75-89 -> 53-56 us a call, docs/performance.md)
ONE_THREAD_FLOPS = 8_000_000
ONE_THREAD_BYTES = 1 << 20
# executables of at least this many FLOPs whose batch divides by the cores run it split, a part per core, each on
# one thread (image-classifier32 at batch 8, 12 MFLOP, 1.3x slower so; bidi-lstm-bytes, 311 MFLOP, 0.84x); the
# parts may exchange this much (an embedding lookup's bounds mask), no more
SPLIT_FLOPS = 100_000_000
SPLIT_EXCHANGE_BYTES = 1 << 16
# a batch the cores do not divide runs as a split part and the rest, joined (OnnxJaxRep._joined), only where the
# join copies at most this many output bytes per FLOP (~4% of the run at 150 GFLOP/s): GPT-2 and LLaMA at batch 7
# (29 MB of logits, 3e-3 bytes a FLOP) ran 1.13-1.3x slower joined, the copy alone 8 ms of LLaMA's 62; the other
# models joined have at most 4e-4
JOINED_BYTES_PER_FLOP = 1e-3
# XLA CPU runs convolutions and dots through YNNPACK by default. Its convolutions are 1.2-2x slower than XLA's
# Eigen kernels on the benchmark's CNNs; its dots are faster on tiny products and on wide ones (2048+ output
# columns: a vocabulary projection), slower on the mid-size ones between (docs/performance.md). So convolutions
# always go to Eigen, and dots too when mid-size dots hold most of the executable's dot FLOPs.
YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
# 512-bit vectors where the CPU has them: fused loops over 16 or 32 channels (MobileNetV2, ultraface) ran 3-6%
# faster in most runs on an AVX-512 AMD EPYC, the other models level (docs/performance.md)
VECTOR_WIDTH = {"xla_cpu_prefer_vector_width": 512}
YNN_DOTS = {YNN_OPTION: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT", **VECTOR_WIDTH}
EIGEN_DOTS = {YNN_OPTION: "", **VECTOR_WIDTH}
EIGEN_DOT_SHARE = 0.75  # of the dot FLOPs, in mid-size dots, above which the dots go to Eigen
TINY_DOT_FLOPS = 2**21
WIDE_DOT_COLUMNS = 2048
FEW_DOT_ROWS = 32  # products of this many rows or fewer (an RNN step's at batch 8) run faster on YNNPACK too
_DOT = re.compile(r"stablehlo\.dot_general [^\n]*?contracting_dims = \[([\d, ]*)\][^\n]*"
                  r": \(tensor<([^>]*)>, tensor<[^>]*>\) -> tensor<([^>]*)>")
_FUNC = re.compile(r"^\s*func\.func (?:public |private )?@([\w.$-]+)\(")
_CALL = re.compile(r"(?:func\.)?call @([\w.$-]+)\(")
_LOOP_BOUND = re.compile(r"stablehlo\.constant dense<(\d+)> : tensor<[su]?i\d+>")
_LESS_THAN = re.compile(r"stablehlo\.compare\s+LT,")
_COLLECTIVE = re.compile(r"= (\w+)\[([\d,]*)\][^ ]* "
                         r"(?:all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)(?:-start)?\(")


def synchronous_cpu_dispatch() -> None:
    """Make JAX run CPU computations on the calling thread, where its CPU client does not exist yet.

    run() waits for its outputs anyway, so JAX's asynchronous CPU dispatch only adds two hand-offs between threads
    to every call: 20-90 us a call on a 2-core VM, half the time of small models (docs/performance.md). JAX reads the
    setting once, when it creates its CPU client, so it is left alone in a process where JAX already computed
    something; a user who wants asynchronous dispatch back sets it after importing onnx_jax (docs/faq.md).
    """
    from jax._src import xla_bridge  # backends_are_initialized has no public spelling

    if not getattr(xla_bridge, "backends_are_initialized", lambda: True)():
        jax.config.update("jax_cpu_enable_async_dispatch", False)


def jax_device(device: str = "CPU") -> jax.Device:
    """The first JAX device for an onnx.backend device string ('CPU', 'CUDA', 'CUDA:1')."""
    parsed = Device(device)
    platform = "cpu" if parsed.type == DeviceType.CPU else "gpu"
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        raise ValueError(f"device {device!r}: JAX sees no {platform} device") from None
    if parsed.device_id >= len(devices):
        raise ValueError(f"device {device!r}: JAX sees only {len(devices)} {platform} device(s)")
    return devices[parsed.device_id]


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.cache
def one_thread_cpus(count: int) -> tuple[jax.Device, ...]:
    """`count` CPU devices of an XLA client of their own whose thread pool has one thread, made on first use: an
    executable on one of them runs on the thread that launches it, one split over `count` of them on `count`
    threads. Empty where this jaxlib cannot make that client. XLA sizes a CPU client's pool from $NPROC when it is
    set, else from the cores: the variable is set only while the client is made. (A single executable ran 1.2-1.6x
    slower on one of two devices of one such client than on a client of one device: hence a client per count.)"""
    try:
        from jaxlib import _jax  # the CPU client's constructor has no public spelling

        previous = os.environ.get("NPROC")
        os.environ["NPROC"] = "1"
        try:
            client = _jax.get_tfrt_cpu_client(asynchronous=False, num_devices=count)
        finally:
            if previous is None:
                del os.environ["NPROC"]
            else:
                os.environ["NPROC"] = previous
        return tuple(client.local_devices())
    except Exception:  # another jaxlib: every executable stays on JAX's own client
        return ()


def _io_bytes(lowered: jax.stages.Lowered) -> int:
    """The bytes of an executable's arguments and results."""
    arrays = [*jax.tree.leaves(lowered.args_info), *jax.tree.leaves(lowered.out_info)]
    return sum(math.prod(a.shape) * np.dtype(a.dtype).itemsize for a in arrays)


def _flops(lowered: jax.stages.Lowered) -> float:
    """A run's FLOPs: XLA's cost analysis, or the dots' where a loop multiplies them (counted per iteration)."""
    cost = lowered.cost_analysis() or {}
    cost = cost[0] if isinstance(cost, list) else cost
    return max(cost.get("flops", 0.0), sum(_dot_flops(dot) * times for dot, times in _executed_dots(lowered.as_text())))


@dataclasses.dataclass(frozen=True)
class Joined:
    """The executable of a batch the cores do not divide (OnnxJaxRep._joined): the first `size` samples through
    `head`, split over the cores, the rest through `rest`, each output joined along axis 0. Sound where every node
    acts on each sample alone (batching.per_sample): each output's rows follow their samples. Its parts hold their
    own weights, so it ignores the ones passed; it is never stored on disk (its parts are)."""

    head: Callable[[list[np.ndarray]], tuple[np.ndarray, ...]]
    rest: Callable[[list[np.ndarray]], tuple[np.ndarray, ...]]
    size: int
    batched: tuple[bool, ...]  # per input: whether it carries the batch on axis 0

    def __call__(self, params: Any, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        return self.run(list(arrays))

    def run(self, arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        head = self.head([a[:self.size] if b else a for a, b in zip(arrays, self.batched)])
        rest = self.rest([a[self.size:] if b else a for a, b in zip(arrays, self.batched)])
        return tuple([np.concatenate(pair) for pair in zip(head, rest)])


@dataclasses.dataclass(frozen=True)
class Segment:
    """One compiled piece of the graph: from a start node to the end, or to the next host op."""

    executable: Any
    inputs: tuple[str, ...]  # names of the run-time values it takes, in order
    host: frozenset[str]  # those of them that stay on the host (strings): passed along, never into XLA
    outputs: tuple[str, ...]  # names of the traced values it returns, in order
    static: Mapping[str, Any]  # values known while tracing that later segments or the outputs need
    stop: int | None  # index of the host node it stops before; None when it ran to the end
    checked: bool = False  # the executable also returns a checkify error (checked mode)
    lean: bool = False  # takes the model's inputs and returns exactly its outputs: run() calls it directly
    needs_x64: bool = True  # takes 64-bit arrays, which JAX only accepts with x64 enabled
    stored: str | None = None  # the on-disk key it was loaded from: not yet known to execute in this process
    micro_batch: int | None = None  # runs its batch as a loop over slices of this many samples (batching.py)
    packing: tuple[tuple[int, ...], ...] | None = None  # lean: the groups of inputs it takes as one buffer each
    placement: str | None = None  # lean, CPU: on one_thread_cpus(1) ("one"), or split over a device a core ("split")

    def run(self, params: tuple[Any, ...], values: list[Any]) -> dict[str, Any]:
        if not self.host and not self.checked:
            return {**self.static, **dict(zip(self.outputs, self.executable(params, *values)))}
        traced = [v for n, v in zip(self.inputs, values) if n not in self.host]
        kept = {n: v for n, v in zip(self.inputs, values) if n in self.host}
        results = self.executable(params, *traced)
        if self.checked:
            error, results = results
            if (message := error.get()) is not None:
                raise InvalidInputError(message.replace(" (`check` failed)", ""))
        return {**kept, **self.static, **dict(zip(self.outputs, results))}


class OnnxJaxRep(BackendRep):
    """A prepared model: ops resolved and weights on the device; executables compiled per input signature."""

    def __init__(
        self,
        program: Program,
        device: str = "CPU",
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        precision: str = "highest",
        devices: Sequence[jax.Device] | None = None,
    ):
        if not isinstance(cache_size, int) or cache_size < 1:
            raise ValueError(f"cache_size must be an int >= 1 (compiled executables kept), got {cache_size!r}")
        self.program = program
        self.precision = check_precision(precision)
        self.device = jax_device(device)
        self.mesh = _batch_mesh(devices)
        weights_on = self.device if self.mesh is None else NamedSharding(self.mesh, PartitionSpec())
        self._inputs: tuple[ValueInfo, ...] = program.graph.inputs
        self._static = tuple(i.name in program.static_names for i in self._inputs)
        self._names = program.input_names
        # every input is one that a numpy array passes through unchanged: the lean path of run()
        self._plain = all(i.kind == "tensor" and i.dtype != object for i in self._inputs)
        self._simple = self._plain and not any(self._static)
        # the latest (signature, segment, its direct call once it has run lean), read without the lock
        self._last: tuple[tuple, Segment, Callable[[list[np.ndarray]], tuple[np.ndarray, ...]] | None] | None = None
        self._graph_digest: str | None = None  # computed on the first compile, for the on-disk executables
        # on CPU from 64-byte-aligned host copies, which XLA's CPU clients read in place: the one-thread client's
        # placements (below) share them
        cpu = self.device.platform == "cpu"
        self._host_weights = [_aligned(np.asarray(p)) if cpu else p for p in program.params.values()]
        with x64():
            self._params = tuple(jax.device_put(self._host_weights, weights_on))
        self._placed: dict[str, tuple[Any, ...]] = {}  # the weights per placement on one_thread_cpus, once needed
        self._cache: collections.OrderedDict[tuple, Segment] = collections.OrderedDict()
        self._directs: dict[tuple, Callable[[list[np.ndarray]], tuple[np.ndarray, ...]]] = {}  # of lean cached ones
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.program.input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.program.output_names

    @property
    def compiled_segments(self) -> int:
        """Compiled executables in the cache: one per input signature, more where graph breaks split the graph."""
        return len(self._cache)

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """Outputs in graph-output order for inputs given as a dict by name or a list in graph-input order."""
        last = self._last
        if last is not None and last[2] is not None and self._simple:  # the steady state: as little Python as can be
            kind = type(inputs)
            if kind is dict and len(inputs) == len(self._names):
                arrays = [inputs.get(n) for n in self._names]
            else:
                arrays = inputs if kind is list or kind is tuple else None
            if arrays is not None and tuple([(a.shape, a.dtype) for a in arrays if type(a) is np.ndarray]) == last[0]:
                return last[2](arrays)
        arrays = self._arrange(inputs)
        if self._simple:  # plain tensors, none static: arrays are numpy arrays
            key = tuple([(a.shape, a.dtype) for a in arrays])
        else:
            key = tuple([_signature(a, static) for a, static in zip(arrays, self._static)])
        if last is not None and last[0] == key:  # the same signature as the call before: skip the LRU bookkeeping
            if last[2] is not None:
                return last[2](arrays)
            segment = last[1]
        else:
            segment = self._cache_get(key) or self._cache_put(key, self._compile_first(arrays))
            direct = self._directs.get(key)
            self._last = (key, segment, direct)
            if direct is not None:
                return direct(arrays)
        try:
            if segment.lean:
                packed = arrays if segment.packing is None else _pack(arrays, segment.packing)
                params = self._weights(segment.placement)
                with jax.enable_x64(True) if segment.needs_x64 else contextlib.nullcontext():
                    outputs = tuple([np.asarray(r) for r in segment.executable(params, *packed)])
                # it ran: later calls go straight in
                direct = _direct(segment.executable, segment.packing, segment.needs_x64, params, arrays)
                with self._lock:
                    if key in self._cache:
                        self._directs[key] = direct
                self._last = (key, segment, direct)
                return outputs
            with jax.enable_x64(True):
                values = segment.run(self._params, [a for a, static in zip(arrays, self._static) if not static])
        except jax.errors.JaxRuntimeError:
            if segment.stored is None:
                raise
            # XLA CPU executables serialized by some processes load but miss a function ("NOT_FOUND: Function
            # ... not found"): drop it and compile anew
            discard_executable(segment.stored)
            with self._lock:
                self._cache.pop(key, None)
                self._directs.pop(key, None)
            self._last = None
            return self.run(inputs)
        if segment.stop is not None:
            values = self._run_breaks(key, segment, values)
        return tuple(_to_numpy(values[name]) for name in self.output_names)

    def _compile_first(self, arrays: list[Any]) -> Segment:
        for value, info in zip(arrays, self._inputs):
            _check_input(value, info)
        static = {i.name: a.copy() for i, a, s in zip(self._inputs, arrays, self._static) if s}
        dynamic = {i.name: a for i, a, s in zip(self._inputs, arrays, self._static) if not s}
        return self._compile(0, static, dynamic)

    def _run_breaks(self, key: tuple, segment: Segment, values: dict[str, Any]) -> dict[str, Any]:
        """The rest of a run after a graph break: host op, next compiled segment, and so on to the end."""
        with x64():
            while segment.stop is not None:
                values = self._host_step(segment, values)
                dynamic = {n: v for n, v in values.items() if n not in segment.static}
                key = (key, segment.stop, tuple((n, _signature(v, False)) for n, v in dynamic.items()))
                segment = self._cache_get(key) or self._cache_put(
                    key, self._compile(segment.stop + 1, segment.static, dynamic)
                )
                values = segment.run(self._params, list(dynamic.values()))
        return values

    def _host_step(self, segment: Segment, values: dict[str, Any]) -> dict[str, Any]:
        program = self.program
        env = {**program.constants, **values}
        program.run_host(program.graph.nodes[segment.stop], env)
        return {n: env[n] for n in program.live_names(segment.stop + 1) if n in env and n not in program.constants}

    def _compile(self, start: int, static: dict[str, Any], dynamic: dict[str, Any]) -> Segment:
        """Compile the graph from node `start` on, up to its end or the next graph break; a whole-graph
        executable that an earlier process stored is loaded instead, without tracing."""
        key = self._stored_key(start, static, dynamic)
        if key is not None and (stored := load_executable(key, self._devices_of)) is not None:
            return Segment(stored[0], **{**stored[1], "stored": key})
        segment = self._trace_and_compile(start, static, dynamic)
        if key is not None and segment.lean and not isinstance(segment.executable, Joined):
            store_executable(key, segment.executable, {f.name: getattr(segment, f.name) for f in
                                                       dataclasses.fields(Segment) if f.name != "executable"})
        return segment

    def _stored_key(self, start: int, static: dict[str, Any], dynamic: dict[str, Any]) -> str | None:
        """The on-disk key of a whole-graph executable: code, graph content, signature, options and XLA_FLAGS;
        None where executables are not stored (custom registries, sharding, graph breaks, sequences, cache off)."""
        plain = all(isinstance(v, np.ndarray) and v.dtype != object for v in (*static.values(), *dynamic.values()))
        if start or not plain or self.mesh is not None or self.program.registry is not REGISTRY or not cache_dir():
            return None
        if self._graph_digest is None:
            self._graph_digest = graph_digest(self.program.graph, frozenset(self.program.params))
        parts = (
            code_digest(), self._graph_digest, self.precision, self.program.checks, os.environ.get("XLA_FLAGS", ""),
            self.device.platform, self.device.device_kind, self.device.id,
            sorted((n, v.dtype.str, v.shape) for n, v in dynamic.items()),
            sorted((n, v.dtype.str, v.shape, hashlib.sha256(v.tobytes()).hexdigest()) for n, v in static.items()),
        )
        return hashlib.sha256(repr(parts).encode()).hexdigest()

    def _devices_of(self, fields: dict[str, Any]) -> list[jax.Device] | None:
        """The devices a stored segment with these fields runs on; None where it cannot run here."""
        placement = fields.get("placement")
        if placement is None:
            return [self.device]
        return list(one_thread_cpus(cpu_cores() if placement == "split" else 1)) or None

    def _weights(self, placement: str | None) -> tuple[Any, ...]:
        """The weights for a segment of this placement (the same host memory as self._params)."""
        if placement is None:
            return self._params
        if placement not in self._placed:
            if placement == "one":
                where = one_thread_cpus(1)[0]
            else:
                where = NamedSharding(_batch_mesh(one_thread_cpus(cpu_cores())), PartitionSpec())
            with x64():
                self._placed[placement] = tuple(jax.device_put(self._host_weights, where))
        return self._placed[placement]

    def _trace_and_compile(self, start: int, static: dict[str, Any], dynamic: dict[str, Any]) -> Segment:
        program, found = self.program, {}
        host = frozenset(n for n, v in dynamic.items() if host_numpy.is_object(v))
        traced = {n: v for n, v in dynamic.items() if n not in host}

        def fn(params: tuple[Any, ...], *values: Any) -> tuple[Any, ...]:
            env = {**program.constants, **dict(zip(program.params, params)), **static, **dict(zip(traced, values))}
            env.update((n, HostValue(n)) for n in host)
            stop = program.evaluate_from(program.graph, env, start)
            live = [n for n in (program.live_names(stop) if stop is not None else program.output_names) if n in env]
            found["stop"] = stop
            found["static"] = {n: env[n] for n in live if is_static(env[n])}
            found["outputs"] = tuple(
                dict.fromkeys(n for n in live if not is_static(env[n]) and not isinstance(env[n], HostValue))
            )
            found["tensors"] = all(isinstance(env[n], jax.Array) for n in found["outputs"])  # no sequences or None
            found["env"] = env
            return tuple(env[n] for n in found["outputs"])

        if program.checks:
            fn = checkify.checkify(fn, errors=checkify.user_checks)
        shardings = None if self.mesh is None else (None, *(_batch_sharding(self.mesh, v) for v in traced.values()))
        values = list(traced.values())

        def lower(packing: tuple[tuple[int, ...], ...] | None, params: tuple[Any, ...]) -> jax.stages.Lowered:
            with x64(self.precision):
                # weights are arguments: closed over, XLA would get them as constants and compile far longer
                if packing is None:
                    return jax.jit(fn, in_shardings=shardings).lower(params, *values)
                unpacked = _unpacking(fn, packing, [v.shape for v in values])
                return jax.jit(unpacked).lower(params, *_pack(values, packing))

        # the model's own inputs, as run() passes them: what a lean segment takes
        model_inputs = not host and not program.checks and tuple(dynamic) == program.input_names
        plain = start == 0 and model_inputs and self.mesh is None and all(type(v) is np.ndarray for v in values)
        packing = _packing(values) if plain else None
        lowered = lower(packing, self._params)
        outputs, stop = found["outputs"], found["stop"]
        lean = (model_inputs and stop is None and found["tensors"] and outputs == program.output_names
                and not any(isinstance(v, list) for v in dynamic.values()))
        if packing is not None and not lean:  # a graph break, or outputs that are not tensors: inputs one by one
            packing = None
            lowered = lower(None, self._params)
        on_cpu = lean and self.device.platform == "cpu" and self.mesh is None
        flops = _flops(lowered) if on_cpu else 0.0
        # small enough that one thread runs it faster than XLA's pool
        one_thread = (on_cpu and flops <= ONE_THREAD_FLOPS and _io_bytes(lowered) <= ONE_THREAD_BYTES
                      and bool(one_thread_cpus(1)))
        if one_thread:
            lowered = lower(packing, self._weights("one"))
        needs_x64 = any(jax.numpy.dtype(v.dtype).itemsize == 8 for v in traced.values() if hasattr(v, "dtype"))
        made = functools.partial(Segment, inputs=tuple(dynamic), host=host, outputs=outputs, static=found["static"],
                                 stop=stop, checked=program.checks, lean=lean, needs_x64=needs_x64)
        if on_cpu and not one_thread and (joined := self._joined(start, static, traced, fn, found, flops)):
            return made(joined)
        with x64(self.precision):
            executable = _compile_lowered(lowered, self.device)
        segment = made(executable, packing=packing, placement="one" if one_thread else None)
        if on_cpu and not one_thread:
            return self._sliced(segment, fn, found, traced, flops) or self._split(segment, fn, traced, flops) or segment
        return segment

    def _batch(self, values: dict[str, Any]) -> tuple[int, frozenset[str]]:
        """The batch size (axis 0 of the inputs whose declared first dimension is not a fixed number) and the
        inputs that carry it."""
        fixed = {i.name for i in self._inputs if i.shape and isinstance(i.shape[0], int)}  # declared sizes: shared
        free = {n: v for n, v in values.items() if np.ndim(v) and n not in fixed}
        batch = next((v.shape[0] for v in free.values()), 0)
        return batch, frozenset(n for n, v in free.items() if v.shape[0] == batch)

    def _joined(self, start: int, static: dict[str, Any], values: dict[str, Any], fn: Any, found: dict[str, Any],
                flops: float) -> Joined | None:
        """A batch the cores do not divide as two executables, where every node acts on each sample alone: the
        largest part of it they divide, split over them, then the samples left (fewer than the cores) on their
        own; None where that part would not run split or would be one sample a core, or where joining the outputs
        would copy more than JOINED_BYTES_PER_FLOP. On two cores MobileNetV2 at batch 7 ran 0.79-0.84x of its time
        on JAX's two-thread client so, ResNet-50 at batch 5 0.87x, but at batch 3 1.10x slower (docs/performance.md).
        `fn` is the traced function, which leaves its values by name in found["env"]."""
        batch, batched = self._batch(values)
        cores = cpu_cores()
        size = batch - batch % cores
        joined = sum(math.prod(v.shape) * v.dtype.itemsize for v in map(found["env"].get, self.program.output_names))
        if (size == batch or size < 2 * cores or joined > JOINED_BYTES_PER_FLOP * flops
                or _split_mesh(size, flops * size / batch) is None):
            return None
        head = {n: v[:size] if n in batched else v for n, v in values.items()}
        rest = {n: v[size:] if n in batched else v for n, v in values.items()}
        whole = found["env"]
        try:
            with x64(self.precision):
                jax.jit(fn).trace(self._params, *rest.values())
            if not batching.per_sample(self.program.graph, whole, found["env"], batched, (batch, batch - size)):
                return None
        except (OnnxJaxError, TypeError, ValueError):  # the graph does not work on fewer samples
            return None
        finally:
            found["env"] = whole
        head_part, head_call = self._part(start, static, head)
        if head_part.placement != "split":
            return None
        return Joined(head_call, self._part(start, static, rest)[1], size, tuple(n in batched for n in values))

    def _part(self, start: int, static: dict[str, Any], values: dict[str, Any]) -> tuple[Segment, Callable]:
        """A lean segment for these inputs and its direct call, run once: one loaded from disk that fails to run
        here is discarded and compiled anew (as run() does for whole segments)."""
        arrays = list(values.values())

        def ran(part: Segment) -> tuple[Segment, Callable]:
            call = _direct(part.executable, part.packing, part.needs_x64, self._weights(part.placement), arrays)
            call(arrays)
            return part, call

        part = self._compile(start, static, values)
        try:
            return ran(part)
        except jax.errors.JaxRuntimeError:
            if part.stored is None:
                raise
            discard_executable(part.stored)
            return ran(self._trace_and_compile(start, static, values))

    def _split(self, segment: Segment, fn: Any, values: dict[str, Any], flops: float) -> Segment | None:
        """The segment with its batch split over one_thread_cpus(cpu_cores()), an equal part per core, where it has
        at least SPLIT_FLOPS and XLA partitions it with next to no exchange between the parts (the collectives in
        the compiled module): each core runs its part on one thread, with no hand-offs between XLA's kernels. Its
        inputs go in one by one (no packing)."""
        batch, batched = self._batch(values)
        mesh = _split_mesh(batch, flops)
        if mesh is None:
            return None
        shardings = (None, *(NamedSharding(mesh, _batch_spec(n in batched)) for n in values))
        with x64(self.precision):
            try:
                split = jax.jit(fn, in_shardings=shardings).lower(self._weights("split"), *values.values())
                executable = _compile_lowered(split, mesh.devices.flat[0])
            except (jax.errors.JaxRuntimeError, NotImplementedError, TypeError, ValueError):  # not partitionable
                return None
        if _exchanged_bytes(executable.as_text()) > SPLIT_EXCHANGE_BYTES:
            return None
        return dataclasses.replace(segment, executable=executable, placement="split", packing=None)

    def _sliced(self, segment: Segment, fn: Any, found: dict[str, Any], values: dict[str, Any],
                flops: float) -> Segment | None:
        """The segment as a loop over slices of its batch (axis 0 of the inputs), where its temporaries are large
        enough to be mapped afresh on every run and every node acts on each sample alone (batching.py); with
        the batch split over one_thread_cpus(cpu_cores()) too where it has at least SPLIT_FLOPS and each core's part
        is two or more samples. `fn` is the traced function, which leaves its values by name in found["env"]."""
        batch, batched = self._batch(values)
        temp = getattr(segment.executable.memory_analysis(), "temp_size_in_bytes", 0) or 0
        micro = batching.micro_batch(batch, temp)
        if micro is None:
            return None
        whole, names = found["env"], list(values)

        def looping(part: int, size: int) -> Any:
            """fn over `part` samples, run as a loop over slices of `size` of them."""

            def loop(params: tuple[Any, ...], *arrays: Any) -> tuple[Any, ...]:
                shared = {n: a for n, a in zip(names, arrays) if n not in batched}
                slices = {n: a.reshape((part // size, size, *a.shape[1:])) for n, a in zip(names, arrays)
                          if n in batched}
                stacked = jax.lax.map(lambda piece: fn(params, *[piece.get(n, shared.get(n)) for n in names]), slices)
                return tuple(o.reshape((part, *o.shape[2:])) for o in stacked)

            return loop

        def independent(size: int) -> bool:
            """Whether the latest trace, on slices of `size` samples, computes each sample alone (batching.py)."""
            return batching.per_sample(self.program.graph, whole, found["env"], batched, (batch, size))

        with x64(self.precision):
            try:
                traced = jax.jit(looping(batch, micro)).trace(self._params, *values.values())
            except (OnnxJaxError, TypeError, ValueError):  # the graph does not work on a slice: keep the whole batch
                return None
            if not independent(micro):
                return None
            split = self._split_slices(looping, independent, batch, micro, batched, values, flops)
            if split is not None:
                executable, size = split
                return dataclasses.replace(segment, executable=executable, micro_batch=size, packing=None,
                                           placement="split")
            executable = _compile_lowered(traced.lower(), self.device)
        return dataclasses.replace(segment, executable=executable, micro_batch=micro, packing=None)

    def _split_slices(self, looping: Any, independent: Callable[[int], bool], batch: int, micro: int,
                      batched: frozenset[str], values: dict[str, Any],
                      flops: float) -> tuple[jax.stages.Compiled, int] | None:
        """The sliced loop run on each core's part of the batch (shard_map: the samples are independent, as
        `per_sample` showed, so the parts exchange nothing), and its slice size: at most `micro` samples, so that
        each part is two or more slices; None where a part is one sample. (A part of one slice is the plain split,
        which ran MobileNetV2 at batch 8 1.0-1.28x slower than its slices of 4 on JAX's client; two slices of 2 a
        core ran it 0.76-0.86x.)"""
        mesh = _split_mesh(batch, flops)
        part = batch // mesh.size if mesh is not None else 0
        size = batching.part_slice(part, micro) if mesh is not None else None
        if size is None:
            return None
        specs = tuple(_batch_spec(n in batched) for n in values)
        try:
            parts = jax.shard_map(looping(part, size), mesh=mesh, in_specs=(PartitionSpec(), *specs),
                                  out_specs=PartitionSpec("batch"), check_vma=False)
            lowered = jax.jit(parts).lower(self._weights("split"), *values.values())
            if size != micro and not independent(size):  # checked again on the trace of these slices
                return None
            return _compile_lowered(lowered, mesh.devices.flat[0]), size
        except (AttributeError, TypeError, jax.errors.JaxRuntimeError):  # a JAX without jax.shard_map(check_vma=),
            return None  # or an XLA that cannot compile it: the slices run on one device

    def _cache_get(self, key: tuple) -> Segment | None:
        with self._lock:
            segment = self._cache.get(key)
            if segment is not None:
                self._cache.move_to_end(key)
            return segment

    def _cache_put(self, key: tuple, segment: Segment) -> Segment:
        with self._lock:
            self._cache[key] = segment
            while len(self._cache) > self._cache_size:
                self._directs.pop(self._cache.popitem(last=False)[0], None)
        return segment

    def _arrange(self, inputs: Any) -> list[np.ndarray]:
        if type(inputs) in (list, tuple) and len(inputs) == len(self._names) and self._plain:
            if all([type(v) is np.ndarray for v in inputs]):  # numpy arrays pass as they are (dtypes checked later)
                return list(inputs)
        if type(inputs) is dict and len(inputs) == len(self._names):
            try:
                values = [inputs[n] for n in self._names]
            except KeyError:
                pass  # the checks below name what is wrong
            else:
                if self._plain and all([type(v) is np.ndarray for v in values]):
                    return values
                return [_as_array(v, info) for v, info in zip(values, self._inputs)]
        if isinstance(inputs, Mapping):
            unknown = set(inputs) - set(self.input_names)
            if unknown:
                raise InvalidInputError(
                    f"unknown input name(s) {sorted(unknown)}; the model's inputs are {list(self.input_names)}"
                )
            missing = [n for n in self.input_names if n not in inputs]
            if missing:
                raise InvalidInputError(f"missing input(s) {missing}; the model's inputs are {list(self.input_names)}")
            values = [inputs[n] for n in self.input_names]
        else:
            values = list(inputs) if isinstance(inputs, Sequence) or not hasattr(inputs, "shape") else [inputs]
            if len(values) != len(self._inputs):
                raise InvalidInputError(
                    f"the model takes {len(self._inputs)} input(s) {list(self.input_names)}, got {len(values)}"
                )
        return [_as_array(v, info) for v, info in zip(values, self._inputs)]


def _packing(values: list[np.ndarray]) -> tuple[tuple[int, ...], ...] | None:
    """Groups of input positions that reach the executable as one buffer each (small arrays of a dtype two or more
    of them share; every other input alone), in order; None where no two inputs pack."""
    small: dict[np.dtype, list[int]] = {}
    for i, v in enumerate(values):
        if v.nbytes <= PACKED_INPUT_BYTES:
            small.setdefault(v.dtype, []).append(i)
    together = {i: tuple(group) for group in small.values() if len(group) > 1 for i in group}
    if not together:
        return None
    return tuple(dict.fromkeys(together.get(i, (i,)) for i in range(len(values))))


def _pack(arrays: list[np.ndarray], packing: tuple[tuple[int, ...], ...]) -> list[np.ndarray]:
    return [arrays[g[0]] if len(g) == 1 else np.concatenate([arrays[i].ravel() for i in g]) for g in packing]


def _unpacking(fn: Any, packing: tuple[tuple[int, ...], ...], shapes: list[tuple[int, ...]]) -> Any:
    """fn taking its inputs as `_pack` passes them: each packed group's buffer cut back into its arrays."""

    def unpacked(params: tuple[Any, ...], *buffers: Any) -> Any:
        values: list[Any] = [None] * len(shapes)
        for group, buffer in zip(packing, buffers):
            if len(group) == 1:
                values[group[0]] = buffer
                continue
            offsets = np.cumsum([0] + [math.prod(shapes[i]) for i in group])
            for i, lo, hi in zip(group, offsets, offsets[1:]):
                values[i] = buffer[lo:hi].reshape(shapes[i])
        return fn(params, *values)

    return unpacked


def _split_mesh(batch: int, flops: float) -> Mesh | None:
    """The mesh of one_thread_cpus(cpu_cores()) that a batch of this many samples and a run of this many FLOPs is
    split over, an equal part per core; None where it is not (too few FLOPs, a batch the cores do not divide)."""
    devices = one_thread_cpus(cpu_cores())
    if len(devices) < 2 or batch < len(devices) or batch % len(devices) or flops < SPLIT_FLOPS:
        return None
    return _batch_mesh(devices)


def _batch_spec(batched: bool) -> PartitionSpec:
    """An input's parts on a split mesh: axis 0 cut into a part per core, or the whole input on every core (any
    rank: a scalar too)."""
    return PartitionSpec("batch") if batched else PartitionSpec()


def _exchanged_bytes(hlo: str) -> int:
    """The bytes a partitioned module's collectives produce (all-gathers, all-reduces, ...), from its HLO text."""
    return sum(math.prod(int(d) for d in dims.split(",") if d) * _HLO_BYTES.get(kind, 16)
               for kind, dims in _COLLECTIVE.findall(hlo))


_HLO_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4, "s32": 4, "u32": 4,
              "f64": 8, "s64": 8, "u64": 8, "c64": 8, "c128": 16}


def _aligned(array: np.ndarray) -> np.ndarray:
    """The array at a 64-byte-aligned address (a copy where it is not): XLA's CPU client then uses it in place."""
    if array.ctypes.data % 64 == 0 or array.dtype == object:
        return array
    buffer = np.empty(array.nbytes + 64, np.uint8)
    start = -buffer.ctypes.data % 64
    aligned = buffer[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    aligned[...] = array
    return aligned


def _direct(executable: Any, packing: tuple[tuple[int, ...], ...] | None, wide: bool, params: tuple[Any, ...],
            inputs: list[np.ndarray]) -> Any:
    """A lean segment's call in the steady state (for inputs like these): inputs packed as it takes them, outputs as
    numpy arrays; small inputs copied into host buffers its device arrays alias (`_staging`), where no other thread
    is using them."""
    if isinstance(executable, Joined):
        return executable.run
    call = _entry_point(executable)
    if wide:
        def plain(arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
            with jax.enable_x64(True):
                return tuple([np.asarray(r) for r in call(params, *(arrays if packing is None else
                                                                    _pack(arrays, packing)))])
    elif packing is None:
        def plain(arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
            return tuple([np.asarray(r) for r in call(params, *arrays)])
    elif len(packing) == 1:  # every input in one buffer
        def plain(arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
            return tuple([np.asarray(r) for r in call(params, np.concatenate([a.ravel() for a in arrays]))])
    else:
        def plain(arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
            return tuple([np.asarray(r) for r in call(params, *_pack(arrays, packing))])
    staging = _staging(call, executable, wide, params, inputs if packing is None else _pack(inputs, packing))
    if staging is None:
        return plain
    hosts, devices = staging
    lock = threading.Lock()
    copies = []  # (where in a host buffer, which input)
    for host, group in zip(hosts, packing or [(i,) for i in range(len(hosts))]):
        offsets = np.cumsum([0] + [inputs[i].size for i in group])
        copies += [(host if len(group) == 1 else host[lo:hi].reshape(inputs[i].shape), i)
                   for i, lo, hi in zip(group, offsets, offsets[1:])]

    def staged(arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        if not lock.acquire(False):  # another thread is between its copies and its outputs
            return plain(arrays)
        try:
            for view, i in copies:
                view[...] = arrays[i]
            if wide:
                with jax.enable_x64(True):
                    return tuple([np.asarray(r) for r in call(params, *devices)])
            return tuple([np.asarray(r) for r in call(params, *devices)])
        finally:
            lock.release()

    return staged


def _staging(call: Any, executable: Any, wide: bool, params: tuple[Any, ...],
             packed: list[np.ndarray]) -> tuple[list[np.ndarray], list[jax.Array]] | None:
    """Host buffers for a call's inputs of at most STAGED_INPUT_BYTES and the device arrays on its CPU device that
    use them in place; None where the inputs are larger, the client copies, or an output is one of the inputs (one
    call with the staged arrays tells)."""
    shardings = executable.input_shardings[0][1:]
    if (sum(p.nbytes for p in packed) > STAGED_INPUT_BYTES or any(p.nbytes == 0 for p in packed)
            or not all(isinstance(s, jax.sharding.SingleDeviceSharding)
                       and all(d.platform == "cpu" for d in s.device_set) for s in shardings)):
        return None
    hosts = [_aligned(np.empty(p.shape, p.dtype)) for p in packed]
    for host, p in zip(hosts, packed):
        host[...] = p
    with jax.enable_x64(True) if wide else contextlib.nullcontext():
        devices = [jax.device_put(h, s) for h, s in zip(hosts, shardings)]
        if any(d.unsafe_buffer_pointer() != h.ctypes.data for d, h in zip(devices, hosts)):
            return None
        outputs = call(params, *devices)
    inputs = {d.unsafe_buffer_pointer() for d in devices}
    if any(isinstance(o, jax.Array) and o.unsafe_buffer_pointer() in inputs for o in outputs):
        return None
    return hosts, devices


def _entry_point(executable: Any) -> Any:
    """A compiled executable's C++ call, which skips a Python frame (~2 us a call), where this JAX exposes it."""
    return getattr(executable, "_call", None) or executable


def _compile_lowered(lowered: jax.stages.Lowered, device: jax.Device) -> jax.stages.Compiled:
    """XLA-compile with onnx_jax's CPU options, but for those the user set in XLA_FLAGS, and without them where
    this jaxlib does not know one."""
    if device.platform != "cpu":
        return lowered.compile()
    flags = os.environ.get("XLA_FLAGS", "")
    options = {k: v for k, v in cpu_compiler_options(lowered.as_text()).items() if k not in flags}
    try:
        return lowered.compile(options)
    except jax.errors.JaxRuntimeError as e:
        if "No such compile option" not in str(e):
            raise
        return lowered.compile()


def cpu_compiler_options(stablehlo: str) -> dict[str, str]:
    """Eigen for the convolutions; for the dots too when mid-size dots (neither tiny, nor wide, nor of few rows)
    hold at least EIGEN_DOT_SHARE of the dot FLOPs a run executes, else YNNPACK for the dots."""
    mid = total = 0
    for dot, times in _executed_dots(stablehlo):
        flops, result_dims = _dot_flops(dot), _dims(dot[2])
        total += flops * times
        rows = math.prod(result_dims[:-1])
        if flops >= TINY_DOT_FLOPS and rows > FEW_DOT_ROWS and (result_dims or [1])[-1] < WIDE_DOT_COLUMNS:
            mid += flops * times
    return EIGEN_DOTS if total and mid >= EIGEN_DOT_SHARE * total else YNN_DOTS


def _dot_flops(dot: tuple[str, str, str]) -> int:
    """The FLOPs of one dot_general as _executed_dots gives it (contracting dims, lhs and result types)."""
    contracting, lhs, result = dot
    lhs_dims = _dims(lhs)
    return 2 * math.prod(_dims(result)) * math.prod(lhs_dims[int(d)] for d in contracting.split(",") if d.strip())


def _executed_dots(stablehlo: str) -> list[tuple[tuple[str, str, str], int]]:
    """Each dot_general of the module (its contracting dims, lhs and result types) with how often a run executes it:
    once per call of its function from `main`, times the iterations of each while loop around it (the constant
    bound of a counted loop, as lax.scan writes it; 1 where the bound is not a constant). A recurrence's small
    per-step product then weighs as what it is, its FLOPs times the steps."""
    functions: dict[str, list[str]] = {}
    for line in stablehlo.splitlines():
        if match := _FUNC.match(line):
            functions[match.group(1)] = body = []
        elif functions:
            body.append(line)
    if "main" not in functions:
        return [(dot, 1) for dot in _DOT.findall(stablehlo)]

    def walk(lines: list[str], times: int, calls: tuple[str, ...]):
        i = 0
        while i < len(lines):
            line = lines[i]
            if match := _DOT.search(line):
                yield match.groups(), times
            elif "stablehlo.while" in line:
                indent = line[:len(line) - len(line.lstrip())]
                end = next((j for j in range(i + 1, len(lines)) if lines[j] == f"{indent}}}"), len(lines))
                region = lines[i + 1:end]
                cond = region[:next((j for j, x in enumerate(region) if x.startswith(f"{indent}}} do {{")), 0)]
                bounds = [int(b) for x in cond for b in _LOOP_BOUND.findall(x)]
                counted = len(bounds) == 1 and any(_LESS_THAN.search(x) for x in cond)
                yield from walk(region, times * (bounds[0] if counted else 1), calls)
                i = end
            else:
                for callee in _CALL.findall(line):
                    if callee in functions and callee not in calls:
                        yield from walk(functions[callee], times, (*calls, callee))
            i += 1

    return list(walk(functions["main"], 1, ("main",)))


def _dims(tensor_type: str) -> list[int]:
    """The static dimensions of an MLIR tensor type such as '8x128xf32' (a dynamic '?' counts as 1)."""
    return [int(d) if d.isdigit() else 1 for d in tensor_type.split("x")[:-1]]


def _batch_mesh(devices: Sequence[jax.Device] | None) -> Mesh | None:
    if devices is None:
        return None
    devices = list(devices)
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise ValueError(f"devices must be a non-empty list of jax devices (e.g. jax.devices()), got {devices!r}")
    return Mesh(np.array(devices), ("batch",))


def _batch_sharding(mesh: Mesh, value: Any) -> NamedSharding | None:
    """Inputs split along their first (batch) axis across the mesh; those it does not divide are replicated."""
    shape = getattr(value, "shape", ())
    split = len(shape) > 0 and shape[0] % mesh.size == 0
    return NamedSharding(mesh, PartitionSpec("batch" if split else None))


def _signature(value: Any, static: bool) -> Any:
    """What a compiled executable is specialised on: shapes and dtypes, and the data of static inputs."""
    if value is None:
        return None
    if isinstance(value, list):
        return tuple(_signature(v, static) for v in value)
    if isinstance(value, dict):  # maps (ZipMap's output) only come out of host steps: never compiled against
        return "map"
    return (value.shape, value.dtype, value.tobytes()) if static else (value.shape, value.dtype)


def _to_numpy(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [_to_numpy(v) for v in value]
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, np.ndarray):
        return value.copy()  # known while tracing and kept with the executable: callers get their own
    return np.asarray(value)


def _as_array(value: Any, info: ValueInfo) -> Any:
    """numpy data for an input: arrays keep their dtype (checked later), Python scalars/lists take the declared one.

    Sequence inputs are lists of such arrays, map inputs dicts (_as_map) and an empty optional is None.
    """
    if value is None and info.kind in ("optional", "sequence"):
        return None
    if info.kind == "map":
        return _as_map(value, info)
    if info.kind == "sequence":
        if not isinstance(value, (list, tuple)):
            raise InvalidInputError(
                f"input {info.name!r} is a sequence: pass a list of arrays, got {type(value).__name__}"
            )
        return [_as_array(v, dataclasses.replace(info, kind="tensor")) for v in value]
    if info.dtype == object:
        return _as_text(value, info)
    try:
        data = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as e:  # RuntimeError: torch's tensors that require grad
        raise InvalidInputError(f"input {info.name!r}: cannot convert {type(value).__name__} to an array: {e}") from e
    if hasattr(value, "__array__") or info.dtype is None or data.dtype == info.dtype:
        return data  # arrays (numpy's, JAX's, torch's) keep their dtype, checked later
    return _python_data_as(data, value, info)


def _python_data_as(data: np.ndarray, value: Any, info: ValueInfo) -> np.ndarray:
    """Python data (numpy's reading of it in `data`) in the input's declared dtype, refused where that would change
    a value: text or objects for numbers, a fraction or an integer out of range for an integer or bool type, a
    finite number past a float type's range (floats may round)."""
    target, inexact = info.dtype, is_float(info.dtype) or info.dtype.kind == "c"
    if data.dtype.kind not in ("biufc" if target.kind == "c" else "biuf"):
        what = {"U": "text", "S": "bytes", "O": "Python objects"}.get(data.dtype.kind, str(data.dtype))
        raise InvalidInputError(f"input {info.name!r}: cannot convert a {type(value).__name__} of {what} to {target}")
    with np.errstate(all="ignore"):
        converted = data.astype(target)
        if inexact:  # rounding is what a float type does; overflowing to inf or NaN is not
            changed = ~np.isfinite(converted.astype(np.complex128 if target.kind == "c" else np.float64))
            changed &= np.isfinite(data)
        else:  # compared as Python numbers: 2**63 into int64 wraps to a value that maps back in uint64
            changed = converted.astype(object) != data.astype(object)
    if np.any(changed):
        raise InvalidInputError(
            f"input {info.name!r} is {target}: {data[changed].flat[0].item()!r} in the {type(value).__name__} does "
            "not fit it; pass an array of that dtype"
        )
    return converted


def _as_text(value: Any, info: ValueInfo) -> np.ndarray:
    """A string input as an object array, as ONNX gives strings (numpy's fixed-width str and bytes arrays included),
    every element checked to be text: numbers in a string tensor would run on as numbers."""
    array = np.asarray(value, dtype=object)
    if not (isinstance(value, np.ndarray) and value.dtype.kind in "US"):
        for element in array.flat:
            if not isinstance(element, (str, bytes)):
                raise InvalidInputError(
                    f"input {info.name!r} holds strings, got {element!r} ({type(element).__name__}) in it"
                )
    return array


def _as_map(value: Any, info: ValueInfo) -> dict:
    """A map input as a new dict (host_numpy.Map, which knows the declared value type): its keys and values checked
    and converted as a tensor input's Python data is (onnxruntime refuses a map of other key types)."""
    declared = "a map from " + " to ".join("any type" if d is None else "strings" if d == object else str(d)
                                           for d in (info.key_dtype, info.dtype))
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"input {info.name!r} is {declared}: pass a dict, got {type(value).__name__}")
    parts = []
    for part, dtype in (("keys", info.key_dtype), ("values", info.dtype)):
        items = list(value.keys() if part == "keys" else value.values())
        if dtype is None:
            parts.append(items)
            continue
        try:
            array = _as_array(items, ValueInfo(info.name, dtype))
        except InvalidInputError as e:
            raise InvalidInputError(f"{e} (in its {part}: it is {declared})") from None
        if array.ndim != 1:
            raise InvalidInputError(f"input {info.name!r} is {declared}: its {part} must be scalars")
        parts.append(array.tolist() if part == "keys" else list(array))
    return host_numpy.Map(zip(*parts), value_dtype=info.dtype)


def _check_input(value: Any, info: ValueInfo) -> None:
    if isinstance(value, list):  # a sequence: each tensor as declared
        for i, v in enumerate(value):
            _check_input(v, dataclasses.replace(info, name=f"{info.name}[{i}]"))
        return
    if not isinstance(value, np.ndarray):
        return
    if info.dtype is not None and value.dtype != info.dtype:
        raise InvalidInputError(
            f"input {info.name!r} must have dtype {info.dtype}, got {value.dtype} "
            f"(convert it first, e.g. x.astype(np.{info.dtype}))"
        )
    if info.shape is None:
        return
    if value.ndim != len(info.shape):
        raise InvalidInputError(
            f"input {info.name!r} must have rank {len(info.shape)} (shape {_shape_text(info.shape)}), "
            f"got shape {value.shape}"
        )
    for axis, (want, got) in enumerate(zip(info.shape, value.shape)):
        if isinstance(want, int) and want > 0 and want != got:
            raise InvalidInputError(
                f"input {info.name!r}: dimension {axis} must be {want} (shape {_shape_text(info.shape)}), "
                f"got shape {value.shape}"
            )


def _shape_text(shape: tuple) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def prepare_graph(graph: Graph, device: str = "CPU", *, registry: Registry = REGISTRY, checks: bool = False,
                  optimize: bool = True, **options: Any) -> OnnxJaxRep:
    """OnnxJaxBackend.prepare for a graph already read (the CLI's path); options as there."""
    program = Program(optimize_graph(graph, registry) if optimize else graph, registry, checks=checks,
                      constant_size=SMALL_CONSTANT, constant_bytes=CONSTANT_WEIGHT_BYTES)
    return OnnxJaxRep(program, device, **options)


class OnnxJaxBackend(Backend):
    """onnx.backend.base.Backend for onnx_jax."""

    @classmethod
    def prepare(
        cls,
        model: ModelLike,
        device: str = "CPU",
        *,
        registry: Registry = REGISTRY,
        cache_size: int = DEFAULT_CACHE_SIZE,
        checks: bool = False,
        optimize: bool = True,
        precision: str = "highest",
        devices: Sequence[jax.Device] | None = None,
        **kwargs: Any,
    ) -> OnnxJaxRep:
        """Load, check and resolve a model once; `checks=True` makes out-of-range indices raise (slower).

        `optimize=False` lowers the graph exactly as written, without onnx_jax.optimize's rewrites.
        `precision` is JAX's matmul/convolution precision: full float32 ("highest") unless asked for the faster
        reduced-precision passes of GPUs/TPUs ("default", "tensorfloat32", "bfloat16"); CPUs compute float32 anyway.
        `devices=jax.devices()` splits each input's first (batch) axis across those devices, weights replicated.
        """
        return prepare_graph(read_graph(model), device, registry=registry, cache_size=cache_size, checks=checks,
                             optimize=optimize, precision=precision, devices=devices)

    @classmethod
    def run_model(cls, model: ModelLike, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(
        cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU", outputs_info: Any = None, **kwargs: Any
    ) -> tuple[np.ndarray, ...]:
        """Run a single node on numpy inputs (by position, or by name as a dict)."""
        names = [n for n in node.input if n]
        if isinstance(inputs, Mapping):
            values = [np.asarray(inputs[n]) for n in names]
        else:
            values = [np.asarray(v) for v in inputs]
        from .dtypes import to_onnx_dtype

        graph = onnx.helper.make_graph(
            [node],
            "run_node",
            [onnx.helper.make_tensor_value_info(n, to_onnx_dtype(v.dtype), v.shape) for n, v in zip(names, values)],
            [onnx.helper.make_value_info(n, onnx.TypeProto()) for n in node.output if n],
        )
        opset = kwargs.pop("opset_version", onnx.defs.onnx_opset_version())
        domains = {node.domain or ""} | {""}
        model = onnx.helper.make_model(
            graph, opset_imports=[onnx.helper.make_opsetid(d, opset if d == "" else 1) for d in domains]
        )
        return cls.prepare(model, device, **kwargs).run(values)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            jax_device(device)
        except ValueError:
            return False
        return True

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)
