"""Op families; importing this package registers every op in onnx_jax.registry.REGISTRY."""

from . import (  # noqa: F401
    attention,
    control_flow,
    data_dependent,
    elementwise,
    image,
    indexing,
    microsoft,
    ml,
    nn,
    quantization,
    random,
    reduction,
    rnn,
    sequence,
    shape,
    signal,
    strings,
    training,
)
