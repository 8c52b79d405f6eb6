"""The model config of the checkpoint contract and the training settings, read and written as the
engine reads and writes them (engine/model-config.c, engine/train-settings.c): strict JSON
(unknown keys, wrong types and missing fields are errors naming the key and its layer), the same
validation, and the same compact JSON with keys in the contract's order.
"""

import json
import math
import struct
from dataclasses import dataclass, field, fields, replace

VOCAB_SIZE = 256
MAX_CONTEXT = 65536
MAX_D_MODEL = 65536
MAX_D_FF = 1 << 20
MAX_MOE_EXPERTS = 1024
MAX_LAYERS = 64
MAX_TOPK = 1024
MAX_EXPERTS = 1 << 30

FFN_KINDS = ("dense", "peer", "pkm", "moe")
QUERY_NORMS = ("none", "layer", "batch")
ACTIVATIONS = ("gelu", "relu")


class ConfigError(ValueError):
    """A config or settings value the engine would refuse, with what would be valid."""


def float32(x):
    """x rounded to the nearest float, as the engine stores its float settings."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ConfigError(f"duplicate key \"{key}\"")
        seen[key] = value
    return seen


def _loads(text, what):
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{what} is not valid JSON: {error.msg} (line {error.lineno}, column "
                          f"{error.colno})") from None


def _type_name(value):
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a real number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


@dataclass
class LayerConfig:
    """One block's feed-forward: dense (d_ff), peer and pkm (n_experts, heads, topk, d_key,
    shared_keys, query_norm; activation for peer; pkm's JSON calls its pool n_memories), moe
    (n_experts, topk, d_ff)."""
    ffn: str
    d_ff: int = 0
    n_experts: int = 0
    heads: int = 0
    topk: int = 0
    d_key: int = 0
    shared_keys: bool = False
    query_norm: str = "batch"
    activation: str = "gelu"

    @property
    def side(self):
        """n = √N, the side of the product-key grid."""
        return math.isqrt(self.n_experts)

    @property
    def key_groups(self):
        return 1 if self.shared_keys else self.heads

    def to_dict(self):
        if self.ffn == "dense":
            return {"ffn": "dense", "d_ff": self.d_ff}
        if self.ffn == "peer":
            return {"ffn": "peer", "n_experts": self.n_experts, "heads": self.heads,
                    "topk": self.topk, "d_key": self.d_key, "shared_keys": self.shared_keys,
                    "query_norm": self.query_norm, "activation": self.activation}
        if self.ffn == "pkm":
            return {"ffn": "pkm", "n_memories": self.n_experts, "heads": self.heads,
                    "topk": self.topk, "d_key": self.d_key, "shared_keys": self.shared_keys,
                    "query_norm": self.query_norm}
        return {"ffn": "moe", "n_experts": self.n_experts, "topk": self.topk, "d_ff": self.d_ff}


@dataclass
class ModelConfig:
    vocab_size: int
    context: int
    d_model: int
    n_layers: int
    n_heads: int
    layers: list = field(default_factory=list)

    def to_dict(self):
        return {"vocab_size": self.vocab_size, "context": self.context, "d_model": self.d_model,
                "n_layers": self.n_layers, "n_heads": self.n_heads,
                "layers": [layer.to_dict() for layer in self.layers]}

    def to_json(self):
        """The contract's compact JSON, keys in its order, as checkpoints carry it."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text):
        """Parses the contract's JSON (a string or an already parsed object) and validates it."""
        root = _loads(text, "the model config") if isinstance(text, str) else text
        cfg = _parse_model(root)
        cfg.validate()
        return cfg

    def validate(self):
        _validate_model(self)


def _get(obj, key, where):
    if key not in obj:
        raise ConfigError(f"{where}missing key \"{key}\"")
    return obj[key]


def _get_int(obj, key, where):
    value = _get(obj, key, where)
    if isinstance(value, float):
        raise ConfigError(f"{where}\"{key}\" must be an integer, not the real number {value:g}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}\"{key}\" must be an integer, not {_type_name(value)}")
    if value < -2**31 or value >= 2**31:
        raise ConfigError(f"{where}\"{key}\" = {value} is far out of range")
    return value


def _get_bool(obj, key, where):
    value = _get(obj, key, where)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}\"{key}\" must be true or false, not {_type_name(value)}")
    return value


def _get_choice(obj, key, names, where):
    value = _get(obj, key, where)
    listed = ", ".join(names)
    if not isinstance(value, str):
        raise ConfigError(f"{where}\"{key}\" must be a string ({listed}), not "
                          f"{_type_name(value)}")
    if value not in names:
        raise ConfigError(f"{where}\"{key}\" = \"{value[:64]}\" is unknown: use {listed}")
    return value


def _check_keys(obj, known, where):
    for key in obj:
        if key not in known:
            raise ConfigError(f"{where}unknown key \"{key[:64]}\" (the keys are "
                              f"{', '.join(known)})")


_LAYER_KEYS = {
    "dense": ("ffn", "d_ff"),
    "peer": ("ffn", "n_experts", "heads", "topk", "d_key", "shared_keys", "query_norm",
             "activation"),
    "pkm": ("ffn", "n_memories", "heads", "topk", "d_key", "shared_keys", "query_norm"),
    "moe": ("ffn", "n_experts", "topk", "d_ff"),
}


def _parse_layer(obj, index):
    where = f"layer {index}: "
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}the entry must be an object, not {_type_name(obj)}")
    kind = _get_choice(obj, "ffn", FFN_KINDS, where)
    where = f"layer {index} ({kind}): "
    _check_keys(obj, _LAYER_KEYS[kind], where)
    if kind == "dense":
        return LayerConfig("dense", d_ff=_get_int(obj, "d_ff", where))
    if kind == "moe":
        return LayerConfig("moe", n_experts=_get_int(obj, "n_experts", where),
                           topk=_get_int(obj, "topk", where), d_ff=_get_int(obj, "d_ff", where))
    layer = LayerConfig(kind)
    layer.n_experts = _get_int(obj, "n_memories" if kind == "pkm" else "n_experts", where)
    layer.heads = _get_int(obj, "heads", where)
    layer.topk = _get_int(obj, "topk", where)
    layer.d_key = _get_int(obj, "d_key", where)
    layer.shared_keys = _get_bool(obj, "shared_keys", where)
    layer.query_norm = _get_choice(obj, "query_norm", QUERY_NORMS, where)
    if kind == "peer":
        layer.activation = _get_choice(obj, "activation", ACTIVATIONS, where)
    return layer


def _parse_model(root):
    if not isinstance(root, dict):
        raise ConfigError(f"the model config must be a JSON object, not {_type_name(root)}")
    _check_keys(root, ("vocab_size", "context", "d_model", "n_layers", "n_heads", "layers"), "")
    cfg = ModelConfig(vocab_size=_get_int(root, "vocab_size", ""),
                      context=_get_int(root, "context", ""),
                      d_model=_get_int(root, "d_model", ""),
                      n_layers=_get_int(root, "n_layers", ""),
                      n_heads=_get_int(root, "n_heads", ""))
    if not 1 <= cfg.n_layers <= MAX_LAYERS:
        raise ConfigError(f"n_layers = {cfg.n_layers} is out of range: use 1 to {MAX_LAYERS}")
    layers = _get(root, "layers", "")
    if not isinstance(layers, list):
        raise ConfigError(f"\"layers\" must be an array of layer objects, not "
                          f"{_type_name(layers)}")
    if len(layers) != cfg.n_layers:
        raise ConfigError(f"\"layers\" has {len(layers)} entries but n_layers = {cfg.n_layers}: "
                          "give one per layer")
    cfg.layers = [_parse_layer(obj, i) for i, obj in enumerate(layers)]
    return cfg


def _validate_retrieval(layer, index):
    kind = layer.ffn
    pool = "n_memories" if kind == "pkm" else "n_experts"
    where = f"layer {index} ({kind}): "
    N = layer.n_experts
    if not 1 <= N <= MAX_EXPERTS:
        raise ConfigError(f"{where}{pool} = {N} is out of range: use a perfect square n² from 1 "
                          f"to {MAX_EXPERTS} (32768²), e.g. 16384 (128²) or 1048576 (1024²)")
    n = math.isqrt(N)
    if n * n != N:
        raise ConfigError(f"{where}{pool} = {N} is not a perfect square: product keys index the "
                          f"experts as an n × n grid; use {n * n} ({n}²) or {(n + 1) ** 2} "
                          f"({n + 1}²)")
    if not 1 <= layer.heads <= 1024:
        raise ConfigError(f"{where}heads = {layer.heads} is out of range: use 1 to 1024 "
                          "retrieval heads")
    if layer.topk < 1 or layer.topk > n or layer.topk > MAX_TOPK:
        raise ConfigError(f"{where}topk = {layer.topk}: use 1 <= topk <= {min(n, MAX_TOPK)} "
                          f"(at most the {n} sub-keys per side)")
    if layer.d_key < 2 or layer.d_key % 2:
        raise ConfigError(f"{where}d_key = {layer.d_key}: the query splits into two halves of "
                          "d_key/2; use an even d_key >= 2")
    if layer.heads * layer.d_key > 1 << 20:
        raise ConfigError(f"{where}heads × d_key = {layer.heads} × {layer.d_key} is too large: "
                          f"keep it at most {1 << 20}")


def _validate_model(cfg):
    if cfg.vocab_size != VOCAB_SIZE:
        raise ConfigError(f"vocab_size = {cfg.vocab_size}: the model reads and predicts bytes, "
                          f"so the vocabulary must be {VOCAB_SIZE}")
    if not 1 <= cfg.context <= MAX_CONTEXT:
        raise ConfigError(f"context = {cfg.context} is out of range: use 1 to {MAX_CONTEXT} "
                          "bytes")
    if not 1 <= cfg.d_model <= MAX_D_MODEL:
        raise ConfigError(f"d_model = {cfg.d_model} is out of range: use 1 to {MAX_D_MODEL}")
    if cfg.n_heads < 1 or cfg.d_model % cfg.n_heads:
        raise ConfigError(f"n_heads = {cfg.n_heads} does not divide d_model = {cfg.d_model}: "
                          "use a divisor of d_model (each head takes d_model / n_heads "
                          "features)")
    if not 1 <= cfg.n_layers <= MAX_LAYERS or len(cfg.layers) != cfg.n_layers:
        raise ConfigError(f"n_layers = {cfg.n_layers} with {len(cfg.layers)} layer entries: use "
                          f"1 to {MAX_LAYERS} layers, one entry each")
    for index, layer in enumerate(cfg.layers):
        if layer.ffn in ("dense", "moe") and not 1 <= layer.d_ff <= MAX_D_FF:
            raise ConfigError(f"layer {index} ({layer.ffn}): d_ff = {layer.d_ff} is out of "
                              f"range: use 1 to {MAX_D_FF}")
        if layer.ffn == "moe":
            if not 1 <= layer.n_experts <= MAX_MOE_EXPERTS:
                raise ConfigError(f"layer {index} (moe): n_experts = {layer.n_experts} is out "
                                  f"of range: use 1 to {MAX_MOE_EXPERTS}")
            if not 1 <= layer.topk <= layer.n_experts:
                raise ConfigError(f"layer {index} (moe): topk = {layer.topk} is out of range: "
                                  f"each token goes to 1 to n_experts = {layer.n_experts} "
                                  "experts")
        elif layer.ffn in ("peer", "pkm"):
            _validate_retrieval(layer, index)
        elif layer.ffn != "dense":
            raise ConfigError(f"layer {index}: ffn kind {layer.ffn!r} is unknown: use dense, "
                              "peer, pkm or moe")


# ---- training settings ----------------------------------------------------------------------

@dataclass
class TrainSettings:
    """The engine's train_settings, with its defaults (engine/trainer.h). seq_len 0 stands for
    the model's context until resolved against a config."""
    batch_size: int = 16
    seq_len: int = 0
    steps: int = 2000
    lr: float = float32(3e-3)
    min_lr: float = float32(3e-4)
    warmup: int = 100
    expert_lr: float = float32(1e-3)
    grad_clip: float = float32(1.0)
    beta1: float = float32(0.9)
    beta2: float = float32(0.95)
    eps: float = float32(1e-8)
    weight_decay: float = float32(0.1)
    moe_aux_weight: float = float32(0.01)
    seed: int = 1337
    eval_interval: int = 200
    eval_windows: int = 16

    @classmethod
    def defaults(cls, cfg):
        return cls(seq_len=cfg.context)

    def to_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_json(self):
        """Every setting as one compact JSON object, in the engine's order."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def updated(self, obj, cfg):
        """A copy with the keys of obj (a parsed JSON object) applied, validated against cfg."""
        if not isinstance(obj, dict):
            raise ConfigError("the training settings must be a JSON object")
        known = [f.name for f in fields(self)]
        changes = {}
        for key, value in obj.items():
            if key not in known:
                raise ConfigError(f"unknown training setting \"{key}\": the settings are "
                                  f"{', '.join(known)}")
            if isinstance(getattr(self, key), float):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"training setting \"{key}\" must be a number")
                changes[key] = float32(float(value))
            else:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"training setting \"{key}\" must be a whole number")
                if key == "seed" and value < 0:
                    raise ConfigError(f"seed = {value}: use a non-negative whole number")
                changes[key] = value
        result = replace(self, **changes)
        result.validate(cfg)
        return result

    def validate(self, cfg):
        s = self
        checks = [
            (1 <= s.batch_size <= 4096, f"batch_size = {s.batch_size}: use 1 to 4096 sequences "
                                        "per step"),
            (1 <= s.seq_len <= cfg.context, f"seq_len = {s.seq_len}: use 1 to the model's "
                                            f"context ({cfg.context})"),
            (s.steps >= 0, f"steps = {s.steps}: use 0 or more"),
            (0.0 <= s.lr <= 1.0, f"lr = {s.lr:g}: use a learning rate from 0 to 1, e.g. 3e-3"),
            (0.0 <= s.min_lr <= s.lr, f"min_lr = {s.min_lr:g}: use 0 to lr ({s.lr:g})"),
            (s.warmup >= 0, f"warmup = {s.warmup}: use 0 or more steps"),
            (0.0 <= s.expert_lr <= 1.0, f"expert_lr = {s.expert_lr:g}: use 0 to 1, e.g. 1e-3"),
            (0.0 <= s.grad_clip < math.inf, f"grad_clip = {s.grad_clip:g}: use a finite norm, "
                                            "or 0 for no clipping"),
            (0.0 <= s.beta1 < 1.0, f"beta1 = {s.beta1:g}: use 0 <= beta1 < 1"),
            (0.0 <= s.beta2 < 1.0, f"beta2 = {s.beta2:g}: use 0 <= beta2 < 1"),
            (0.0 < s.eps < math.inf, f"eps = {s.eps:g}: use a small positive number, e.g. "
                                     "1e-8"),
            (0.0 <= s.weight_decay < math.inf, f"weight_decay = {s.weight_decay:g}: use 0 or "
                                               "more, e.g. 0.1"),
            (0.0 <= s.moe_aux_weight < math.inf, f"moe_aux_weight = {s.moe_aux_weight:g}: use "
                                                 "0 or more, e.g. 0.01"),
            (s.eval_interval >= 0, f"eval_interval = {s.eval_interval}: use 0 (never) or more "
                                   "steps"),
            (s.eval_windows >= 1, f"eval_windows = {s.eval_windows}: use 1 or more"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


def settings_from_json(text, cfg, base=None):
    """Training settings from a JSON object (text or parsed); keys it leaves out keep the values
    of base (the defaults when None)."""
    obj = _loads(text, "the training settings") if isinstance(text, str) else text
    return (base or TrainSettings.defaults(cfg)).updated(obj, cfg)


def run_config_from_json(text):
    """A run file, {"model": <config>, "training": <settings>}: (ModelConfig, TrainSettings)."""
    root = _loads(text, "the run file") if isinstance(text, str) else text
    if not isinstance(root, dict):
        raise ConfigError("the run file must be a JSON object with \"model\" and \"training\"")
    for key in root:
        if key not in ("model", "training"):
            raise ConfigError(f"unknown key \"{key}\" in the run file: it holds \"model\" (the "
                              "model config) and \"training\" (the training settings)")
    if "model" not in root:
        raise ConfigError("the run file has no \"model\": add the model config there")
    cfg = ModelConfig.from_json(root["model"])
    settings = TrainSettings.defaults(cfg)
    if "training" in root:
        settings = settings.updated(root["training"], cfg)
    else:
        settings.validate(cfg)
    return cfg, settings
