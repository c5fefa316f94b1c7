"""The op registry: implementations keyed by (domain, op_type, since_version), and the one version resolver."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import onnx

from .graph import STANDARD_DOMAINS, get_schema


@dataclass(frozen=True)
class OpDef:
    """One implementation of an op, valid from `since` until the next registered version."""

    fn: Callable
    domain: str
    op_type: str
    since: int
    input_names: tuple[str, ...]
    static: frozenset[int]  # input positions whose values must be known at trace time
    shape_only: bool  # output depends only on input shapes (Shape, Size): it is static even for traced inputs
    fold: bool  # evaluate at trace time when every input is static (False for random ops)
    context: bool  # the function takes a keyword-only `ctx` (node name, subgraph runner, ...)
    # output shape depends on input values, or the op makes strings: runs on concrete numpy data, between compiled
    # segments; a callable decides per node (a LabelEncoder with string keys or values)
    host: bool | Callable[[Any], bool] = False
    static_if: Callable[[Any], tuple[str, ...]] | None = None  # extra static inputs decided per node
    # per node, a numpy function that the op's (compiled) results go through on the host, or None: a classifier
    # computes label indices in XLA, and its tail turns them into string labels
    host_tail: Callable[[Any], Callable[[tuple], tuple] | None] | None = None

    def runs_on_host(self, node: Any) -> bool:
        """True when `node` runs as a whole on the host once its inputs are traced."""
        return bool(self.host(node)) if callable(self.host) else self.host

    def static_positions(self, node: Any) -> frozenset[int]:
        """Input positions of `node` whose values must be known at trace time."""
        if self.static_if is None:
            return self.static
        return self.static | frozenset(self.input_names.index(n) for n in self.static_if(node))


class Registry:
    """Implementations by (domain, op_type), each a {since_version: OpDef} table. Registering a key twice is an error."""

    def __init__(self) -> None:
        self._ops: dict[tuple[str, str], dict[int, OpDef]] = {}

    def register(
        self,
        op_type: str,
        since: int = 1,
        *,
        domain: str = "",
        static: tuple[str, ...] = (),
        shape_only: bool = False,
        fold: bool = True,
        context: bool = False,
        static_if: Callable[[Any], tuple[str, ...]] | None = None,
        host: bool | Callable[[Any], bool] = False,
        host_tail: Callable[[Any], Callable[[tuple], tuple] | None] | None = None,
    ) -> Callable[[Callable], Callable]:
        """Decorator registering `fn` as `op_type` from opset `since` on; `static` names inputs that must be static."""

        def decorate(fn: Callable) -> Callable:
            params = inspect.signature(fn).parameters.values()
            names = tuple(
                p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
            )
            unknown = set(static) - set(names)
            if unknown:
                raise ValueError(f"{op_type}: static inputs {sorted(unknown)} are not parameters of {fn.__name__}")
            versions = self._ops.setdefault((domain, op_type), {})
            if since in versions:
                raise ValueError(f"{domain or 'ai.onnx'}::{op_type} since {since} is registered twice")
            versions[since] = OpDef(
                fn=fn,
                domain=domain,
                op_type=op_type,
                since=since,
                input_names=names,
                static=frozenset(names.index(n) for n in static),
                shape_only=shape_only,
                fold=fold,
                context=context,
                static_if=static_if,
                host=host,
                host_tail=host_tail,
            )
            return fn

        return decorate

    def resolve(self, domain: str, op_type: str, opset: int) -> OpDef | None:
        """The implementation for an op at the model's opset: newest one at or below the schema's since_version."""
        versions = self._ops.get((domain, op_type))
        if not versions:
            return None
        schema = get_schema(op_type, domain, opset)
        if schema is None and domain in STANDARD_DOMAINS and onnx.defs.has(op_type, domain):
            return None  # no such op at this opset
        # (an op onnx does not define at all, in the default domain, is a runtime's extension: onnxruntime
        # registers SimplifiedLayerNormalization there)
        since = schema.since_version if schema is not None else opset
        usable = [v for v in versions if v <= since]
        return versions[max(usable)] if usable else None

    def copy(self) -> Registry:
        """A new registry with the same ops, to extend with custom ones without touching this one."""
        new = Registry()
        new._ops = {key: dict(versions) for key, versions in self._ops.items()}
        return new

    def versions(self, domain: str, op_type: str) -> tuple[int, ...]:
        return tuple(sorted(self._ops.get((domain, op_type), {})))

    def __iter__(self):
        for versions in self._ops.values():
            yield from versions.values()


REGISTRY = Registry()
op = REGISTRY.register
