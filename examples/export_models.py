"""Export transformer and CNN models from `transformers` configs (random weights, no hub access) to ONNX.

Usage: python examples/export_models.py [--size tiny|bench] [--exporter dynamo|legacy|both] --out DIR [NAME ...]
writes DIR/{name}-{exporter}.onnx for each model (all of MODELS by default) and prints the paths. Needs
'.[test]' (torch 2.13, transformers 5, onnxscript for the dynamo exporter).

As a module: `export(name, path, exporter=..., size=...)` writes one file and returns the inputs it was
traced with (batch 2); `example_inputs(name, size, batch, seed)` makes inputs for any batch size; `build`
gives the PyTorch module itself. Every file has a dynamic batch axis (batch 1 and 8 run from one file) and is
self-contained (the dynamo exporter's weights are not written as external data). Sizes:
- `tiny`: 2 layers, hidden 32, sequence 16, 32x32 images; each export takes seconds (tests/test_transformers.py).
- `bench`: ResNet-50 and MobileNetV2 1.0 at their real configs on 224x224 images; BERT, GPT-2, LLaMA, ViT and
  the Whisper encoder small but realistic: 4 layers, hidden 256, 4 heads, FFN 1024, sequence 128 (vocabulary
  8192), ViT on 224x224 in 16x16 patches, Whisper on 80 mel bins x 1500 frames (its full 30 s window).
Weights are random (`torch.manual_seed(0)`), BatchNorm running statistics too (mean in [-0.2, 0.2], variance
in [0.5, 1.5]: calibrating them on one random batch instead left near-zero variances that amplify rounding).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

MODELS = ("bert", "gpt2", "llama", "vit", "whisper", "resnet50", "mobilenetv2")
EXPORTERS = ("dynamo", "legacy")
SIZES = ("tiny", "bench")
EXPORT_BATCH = 2  # traced with 2 rows: with 1 the exporters would specialize the batch axis

TEXT = {  # the text and speech models' dimensions per size
    "tiny": dict(layers=2, hidden=32, heads=4, ffn=64, vocab=128, seq=16),
    "bench": dict(layers=4, hidden=256, heads=4, ffn=1024, vocab=8192, seq=128),
}
IMAGE_SIDE = {"tiny": 32, "bench": 224}
VIT_PATCH = {"tiny": 8, "bench": 16}
WHISPER = {"tiny": dict(mels=16, positions=32), "bench": dict(mels=80, positions=750)}  # frames = 2 * positions
WHISPER_DECODER_SEQ = 8  # tiny only: the bench size exports the encoder alone


class Outputs(torch.nn.Module):
    """Calls a transformers model with keyword inputs and returns the named outputs as a tuple.

    transformers 5 forwards take many optional parameters and `**kwargs`; the exporters pass positional
    tensors, which would land in the wrong parameters (BertModel with the legacy exporter: "got multiple
    values for argument 'use_cache'"), so the wrapper names them. `fixed` are extra keyword arguments."""

    def __init__(self, model: torch.nn.Module, inputs: tuple[str, ...], outputs: tuple[str, ...], **fixed):
        super().__init__()
        self.model, self.inputs, self.outputs, self.fixed = model, inputs, outputs, fixed

    def forward(self, *args):
        result = self.model(**dict(zip(self.inputs, args)), **self.fixed)
        return tuple(result[name] for name in self.outputs)


def _bert(size: str, attention: str) -> Outputs:
    from transformers import BertConfig, BertModel

    t = TEXT[size]
    config = BertConfig(vocab_size=t["vocab"], hidden_size=t["hidden"], num_hidden_layers=t["layers"],
                        num_attention_heads=t["heads"], intermediate_size=t["ffn"],
                        max_position_embeddings=max(64, t["seq"]), attn_implementation=attention)
    return Outputs(BertModel(config), ("input_ids", "attention_mask"), ("last_hidden_state", "pooler_output"))


def _gpt2(size: str, attention: str) -> Outputs:
    from transformers import GPT2Config, GPT2LMHeadModel

    t = TEXT[size]
    config = GPT2Config(vocab_size=t["vocab"], n_embd=t["hidden"], n_layer=t["layers"], n_head=t["heads"],
                        n_inner=t["ffn"], n_positions=max(64, t["seq"]), bos_token_id=t["vocab"] - 1,
                        eos_token_id=t["vocab"] - 1, attn_implementation=attention)
    return Outputs(GPT2LMHeadModel(config), ("input_ids", "attention_mask"), ("logits",), use_cache=False)


def _llama(size: str, attention: str) -> Outputs:
    from transformers import LlamaConfig, LlamaForCausalLM

    t = TEXT[size]
    config = LlamaConfig(vocab_size=t["vocab"], hidden_size=t["hidden"], num_hidden_layers=t["layers"],
                         num_attention_heads=t["heads"], num_key_value_heads=t["heads"] // 2,  # grouped queries
                         intermediate_size=t["ffn"], max_position_embeddings=max(64, t["seq"]),
                         attn_implementation=attention)
    return Outputs(LlamaForCausalLM(config), ("input_ids", "attention_mask"), ("logits",), use_cache=False)


def _vit(size: str, attention: str) -> Outputs:
    from transformers import ViTConfig, ViTModel

    t = TEXT[size]
    config = ViTConfig(hidden_size=t["hidden"], num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
                       intermediate_size=t["ffn"], image_size=IMAGE_SIDE[size], patch_size=VIT_PATCH[size],
                       attn_implementation=attention)
    return Outputs(ViTModel(config), ("pixel_values",), ("last_hidden_state", "pooler_output"))


def _whisper(size: str, attention: str) -> Outputs:
    from transformers import WhisperConfig, WhisperModel

    t, w = TEXT[size], WHISPER[size]
    config = WhisperConfig(vocab_size=t["vocab"], num_mel_bins=w["mels"], d_model=t["hidden"],
                           encoder_layers=t["layers"], decoder_layers=t["layers"],
                           encoder_attention_heads=t["heads"], decoder_attention_heads=t["heads"],
                           encoder_ffn_dim=t["ffn"], decoder_ffn_dim=t["ffn"], max_source_positions=w["positions"],
                           max_target_positions=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                           decoder_start_token_id=1, attn_implementation=attention)
    model = WhisperModel(config)
    if size == "bench":  # the encoder alone: the part whose cost grows with the audio
        return Outputs(model.encoder, ("input_features",), ("last_hidden_state",))
    # The decoder's mask is an input: without one, transformers looks for packed sequences with torch.diff,
    # which the legacy exporter cannot export ("aten::diff ... is not supported").
    return Outputs(model, ("input_features", "decoder_input_ids", "decoder_attention_mask"),
                   ("last_hidden_state", "encoder_last_hidden_state"), use_cache=False)


def _resnet50(size: str, attention: str) -> Outputs:
    from transformers import ResNetConfig, ResNetModel

    if size == "tiny":  # the ResNet-50 layout (4 stages of bottleneck blocks), narrow and shallow
        config = ResNetConfig(embedding_size=16, hidden_sizes=[32, 64, 128, 256], depths=[1, 2, 2, 1],
                              layer_type="bottleneck")
    else:
        config = ResNetConfig(embedding_size=64, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3],
                              layer_type="bottleneck")
    return Outputs(ResNetModel(config), ("pixel_values",), ("last_hidden_state", "pooler_output"))


def _mobilenetv2(size: str, attention: str) -> Outputs:
    from transformers import MobileNetV2Config, MobileNetV2Model

    config = MobileNetV2Config(depth_multiplier=0.35 if size == "tiny" else 1.0, image_size=IMAGE_SIDE[size])
    return Outputs(MobileNetV2Model(config), ("pixel_values",), ("last_hidden_state", "pooler_output"))


BUILDERS = {"bert": _bert, "gpt2": _gpt2, "llama": _llama, "vit": _vit, "whisper": _whisper,
            "resnet50": _resnet50, "mobilenetv2": _mobilenetv2}


def _check(name: str, size: str) -> None:
    if name not in BUILDERS or size not in SIZES:
        raise ValueError(f"unknown model {name!r} or size {size!r}: models {MODELS}, sizes {SIZES}")


def build(name: str, size: str = "tiny", attention: str = "sdpa") -> Outputs:
    """The model in eval mode with random weights (deterministic); `attention`: transformers' attention
    implementation for the text and speech models ("sdpa" or "eager")."""
    _check(name, size)
    torch.manual_seed(0)
    module = BUILDERS[name](size, attention)
    for layer in module.modules():  # random running statistics: the exported normalization is no identity
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.running_mean.uniform_(-0.2, 0.2)
            layer.running_var.uniform_(0.5, 1.5)
    return module.eval()


def _tokens(rng: np.random.Generator, batch: int, seq: int, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and an attention mask, right-padded by a different length per row (the first row unpadded)."""
    ids = rng.integers(0, vocab, (batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), np.int64)
    for row in range(batch):
        mask[row, seq - (row * 3) % (seq // 2):] = 0
    return ids, mask


def example_inputs(name: str, size: str = "tiny", batch: int = EXPORT_BATCH, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of model `name` (in the exported graph's input order) with `batch` rows, deterministic in `seed`."""
    _check(name, size)
    rng = np.random.default_rng(seed)
    if name in ("bert", "gpt2", "llama"):
        ids, mask = _tokens(rng, batch, TEXT[size]["seq"], TEXT[size]["vocab"])
        return {"input_ids": ids, "attention_mask": mask}
    if name == "whisper":
        w = WHISPER[size]
        feeds = {"input_features": rng.standard_normal((batch, w["mels"], 2 * w["positions"])).astype(np.float32)}
        if size == "tiny":
            ids, mask = _tokens(rng, batch, WHISPER_DECODER_SEQ, TEXT[size]["vocab"])
            feeds.update(decoder_input_ids=ids, decoder_attention_mask=mask)
        return feeds
    side = IMAGE_SIDE[size]
    return {"pixel_values": rng.standard_normal((batch, 3, side, side)).astype(np.float32)}


def export(name: str, path, *, exporter: str = "dynamo", size: str = "tiny", opset: int | None = None,
           attention: str = "sdpa") -> dict[str, np.ndarray]:
    """Export model `name` to `path` with a dynamic batch axis; returns the inputs it was traced with.

    `opset=None` takes the exporter's default (18 for dynamo, 20 for legacy in torch 2.13)."""
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}: {EXPORTERS}")
    module = build(name, size, attention)
    feeds = example_inputs(name, size)
    names, outputs = list(feeds), list(module.outputs)
    args = tuple(torch.from_numpy(x) for x in feeds.values())
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings from torch and transformers
        if exporter == "legacy":
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset, input_names=names,
                              output_names=outputs, dynamic_axes={n: {0: "batch"} for n in names + outputs})
        else:
            batch = torch.export.Dim("batch", min=1, max=1024)
            torch.onnx.export(module, args, str(path), dynamo=True, opset_version=opset, input_names=names,
                              output_names=outputs, dynamic_shapes=(tuple({0: batch} for _ in names),),
                              external_data=False, verbose=False)
    return feeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"models to export (default: all of {MODELS})")
    parser.add_argument("--size", choices=SIZES, default="tiny")
    parser.add_argument("--exporter", choices=[*EXPORTERS, "both"], default="both")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if unknown := set(args.names) - set(MODELS):
        parser.error(f"unknown models {sorted(unknown)}: choose from {MODELS}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or MODELS:
        for exporter in EXPORTERS if args.exporter == "both" else (args.exporter,):
            path = args.out / f"{name}-{exporter}.onnx"
            export(name, path, exporter=exporter, size=args.size)
            print(path, flush=True)


if __name__ == "__main__":
    main()
