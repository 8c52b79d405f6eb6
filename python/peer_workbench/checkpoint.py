"""Checkpoints as the workbench writes and reads them (engine/checkpoint.c).

The model file: one safetensors file with the contract's tensors in contract order and metadata
"format": "peer-workbench", "format_version": "1", "config": the model config JSON. The trainer
file beside it ("run.safetensors" → "run.trainer.safetensors"): Adam's moments "adam.m.<name>"
and "adam.v.<name>" of every tensor but the running statistics, and metadata "format":
"peer-workbench-trainer", "format_version", "config", "settings", "step", "optimizer_step",
"tokens", "flops" and "data_rng", so that a run continues exactly where it stopped, here or in
the workbench. Loads refuse, naming the tensor and the problem, any file whose metadata, names
or shapes disagree with its config.
"""

import math
from dataclasses import dataclass

import torch

from . import safetensors
from .config import ConfigError, ModelConfig, settings_from_json
from .model import PeerModel

FORMAT = "peer-workbench"
FORMAT_VERSION = "1"
TRAINER_FORMAT = "peer-workbench-trainer"


class CheckpointError(ValueError):
    """A file that is not a checkpoint of this contract, with the reason and the file."""


@dataclass
class ContractTensor:
    name: str
    shape: tuple
    buffer: bool = False        # running statistics: saved, never trained
    expert_table: bool = False  # sparse gradient and optimiser state


def contract_tensors(cfg):
    """The contract's tensors of a config in checkpoint order (engine/model.c, list_tensors)."""
    V, T, D = cfg.vocab_size, cfg.context, cfg.d_model
    out = [ContractTensor("tok_emb", (V, D)), ContractTensor("pos_emb", (T, D))]
    for l, layer in enumerate(cfg.layers):
        def add(suffix, shape, **flags):
            out.append(ContractTensor(f"blocks.{l}.{suffix}", tuple(shape), **flags))
        add("ln1.weight", (D,))
        add("ln1.bias", (D,))
        add("attn.qkv.weight", (3 * D, D))
        add("attn.qkv.bias", (3 * D,))
        add("attn.out.weight", (D, D))
        add("attn.out.bias", (D,))
        add("ln2.weight", (D,))
        add("ln2.bias", (D,))
        if layer.ffn == "dense":
            F = layer.d_ff
            add("ffn.fc.weight", (F, D))
            add("ffn.fc.bias", (F,))
            add("ffn.proj.weight", (D, F))
            add("ffn.proj.bias", (D,))
        elif layer.ffn == "moe":
            E, F = layer.n_experts, layer.d_ff
            add("ffn.router.weight", (E, D))
            add("ffn.fc.weight", (E, F, D))
            add("ffn.fc.bias", (E, F))
            add("ffn.proj.weight", (E, D, F))
            add("ffn.proj.bias", (E, D))
        else:
            HK, N = layer.heads * layer.d_key, layer.n_experts
            add("ffn.query.weight", (HK, D))
            add("ffn.query.bias", (HK,))
            if layer.query_norm != "none":
                add("ffn.query_norm.weight", (HK,))
                add("ffn.query_norm.bias", (HK,))
            if layer.query_norm == "batch":
                add("ffn.query_norm.running_mean", (HK,), buffer=True)
                add("ffn.query_norm.running_var", (HK,), buffer=True)
            add("ffn.keys", (layer.key_groups, 2, layer.side, layer.d_key // 2))
            if layer.ffn == "peer":
                add("ffn.down", (N, D), expert_table=True)
                add("ffn.up", (N, D), expert_table=True)
            else:
                add("ffn.values", (N, D), expert_table=True)
    out.append(ContractTensor("ln_f.weight", (D,)))
    out.append(ContractTensor("ln_f.bias", (D,)))
    return out


def trainer_path(model_path):
    """The trainer file's name beside a model file."""
    path = str(model_path)
    stem = path[:-len(".safetensors")] if path.endswith(".safetensors") else path
    return stem + ".trainer.safetensors"


def _read(path):
    try:
        return safetensors.read(path)
    except safetensors.SafetensorsError as error:
        raise CheckpointError(str(error)) from None


def _config_of(metadata, path, fmt):
    found = metadata.get("format")
    if found != fmt:
        said = f"\"{found}\"" if found is not None else "missing"
        raise CheckpointError(f"{path} is not a {fmt} file: its metadata \"format\" is {said} (a "
                              "safetensors file from elsewhere has no model config to load)")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        said = f"\"{version}\"" if version is not None else "(missing)"
        raise CheckpointError(f"{path} has format_version {said}; this version reads version "
                              f"{FORMAT_VERSION}")
    if "config" not in metadata:
        raise CheckpointError(f"{path} has no \"config\" in its metadata")
    try:
        return ModelConfig.from_json(metadata["config"])
    except ConfigError as error:
        raise CheckpointError(f"{path}: its config is invalid: {error}") from None


def _check_tensors(tensors, path, expected):
    """expected: (file name, shape) pairs. Every one present with its shape, nothing else."""
    for name, shape in expected:
        if name not in tensors:
            raise CheckpointError(f"{path}: tensor \"{name}\" is missing (its config needs it)")
        got = tuple(tensors[name].shape)
        if got != tuple(shape):
            raise CheckpointError(f"{path}: tensor \"{name}\" has shape "
                                  f"({', '.join(map(str, got))}) but the config says "
                                  f"({', '.join(map(str, shape))})")
    names = {name for name, _ in expected}
    for name in tensors:
        if name not in names:
            raise CheckpointError(f"{path}: tensor \"{name}\" is not part of the model its "
                                  "config describes")


def read_config(path):
    """The ModelConfig a model file declares."""
    _, metadata = _read(path)
    return _config_of(metadata, path, FORMAT)


def load_checkpoint(path, device=None, model=None):
    """The model of a model file (a new PeerModel on device, or model's weights replaced when
    its config is the file's)."""
    tensors, metadata = _read(path)
    cfg = _config_of(metadata, path, FORMAT)
    contract = contract_tensors(cfg)
    _check_tensors(tensors, path, [(t.name, t.shape) for t in contract])
    if model is None:
        model = PeerModel(cfg, device=device)
    elif model.cfg.to_json() != cfg.to_json():
        raise CheckpointError(f"{path} holds a different model (its config is {cfg.to_json()})")
    state = model.state_dict()
    with torch.no_grad():
        for t in contract:
            state[t.name].copy_(tensors[t.name])
    return model


def model_tensors(model):
    """(name, tensor) pairs of a model in contract order; the model's tensors must be exactly
    the contract's."""
    state = model.state_dict()
    contract = contract_tensors(model.cfg)
    names = [t.name for t in contract]
    if sorted(names) != sorted(state):
        extra = sorted(set(state) - set(names))
        missing = sorted(set(names) - set(state))
        raise CheckpointError(f"the model's tensors are not the contract's (extra {extra}, "
                              f"missing {missing})")
    return [(t.name, state[t.name]) for t in contract]


def save_checkpoint(model, path):
    """Writes the model file atomically."""
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "config": model.cfg.to_json()}
    safetensors.write(path, model_tensors(model), metadata)


# ---- trainer file ---------------------------------------------------------------------------

@dataclass
class TrainerState:
    """What a trainer file holds besides the model."""
    settings: object       # TrainSettings
    step: int              # steps done
    optimizer_step: int    # optimiser updates done
    tokens: float          # tokens trained on
    flops: float           # training FLOPs spent
    data_rng: int          # the batch sampler's 64-bit state
    moments_m: dict        # name -> tensor
    moments_v: dict


def save_trainer(path, model, optimizer, state):
    """Writes the trainer file of a run atomically; optimizer a PeerAdamW whose moments follow
    the model's tensors, state a TrainerState (its moments ignored)."""
    trained = [t for t in contract_tensors(model.cfg) if not t.buffer]
    tensors = [(f"adam.m.{t.name}", optimizer.m[t.name]) for t in trained]
    tensors += [(f"adam.v.{t.name}", optimizer.v[t.name]) for t in trained]
    metadata = {
        "format": TRAINER_FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.cfg.to_json(),
        "settings": state.settings.to_json(),
        "step": str(state.step),
        "optimizer_step": str(optimizer.step_count),
        "tokens": repr(float(state.tokens)),
        "flops": repr(float(state.flops)),
        "data_rng": f"{state.data_rng:016x}",
    }
    safetensors.write(path, tensors, metadata)


def _whole(metadata, key, path):
    text = metadata.get(key)
    if text is None or not text.isdigit():
        raise CheckpointError(f"{path}: metadata \"{key}\" is "
                              f"{'missing' if text is None else 'not a whole number'}; expected "
                              "a whole number")
    return int(text)


def _number(metadata, key, path):
    text = metadata.get(key)
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not value >= 0.0:
        raise CheckpointError(f"{path}: metadata \"{key}\" is "
                              f"{'missing' if text is None else 'not a number'}; expected a "
                              "number")
    return value


def load_trainer(path, cfg):
    """The TrainerState of a trainer file, checked against the model config cfg."""
    tensors, metadata = _read(path)
    file_cfg = _config_of(metadata, path, TRAINER_FORMAT)
    if file_cfg.to_json() != cfg.to_json():
        raise CheckpointError(f"{path} belongs to a different model (their configs differ): "
                              "resume from the pair saved together")
    if "settings" not in metadata:
        raise CheckpointError(f"{path} has no \"settings\" in its metadata")
    try:
        settings = settings_from_json(metadata["settings"], cfg)
    except ConfigError as error:
        raise CheckpointError(f"{path}: its training settings are invalid: {error}") from None
    rng = metadata.get("data_rng", "")
    try:
        data_rng = int(rng, 16)
    except ValueError:
        raise CheckpointError(f"{path}: metadata \"data_rng\" is missing or not "
                              "hexadecimal") from None
    trained = [t for t in contract_tensors(cfg) if not t.buffer]
    expected = [(f"adam.{which}.{t.name}", t.shape) for which in "mv" for t in trained]
    _check_tensors(tensors, path, expected)
    return TrainerState(
        settings=settings,
        step=_whole(metadata, "step", path),
        optimizer_step=_whole(metadata, "optimizer_step", path),
        tokens=_number(metadata, "tokens", path),
        flops=_number(metadata, "flops", path),
        data_rng=data_rng,
        moments_m={t.name: tensors[f"adam.m.{t.name}"] for t in trained},
        moments_v={t.name: tensors[f"adam.v.{t.name}"] for t in trained},
    )
