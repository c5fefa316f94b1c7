"""`python -m onnx_jax`: the onnx-jax command line."""

from .cli import main

raise SystemExit(main())
