"""PEER Workbench's model in PyTorch: the checkpoint contract's byte-level transformer with
dense, PEER, PKM and MoE blocks as a torch.nn.Module, the workbench's checkpoints read and
written both ways, the engine's optimiser, and a training program for one device or many
(torch.distributed) whose run folders the workbench opens."""

from .checkpoint import (CheckpointError, load_checkpoint, load_trainer, read_config,
                         save_checkpoint, save_trainer, trainer_path)
from .config import ConfigError, LayerConfig, ModelConfig, TrainSettings, run_config_from_json
from .data import Corpus
from .model import PeerModel, forward_flops_per_token
from .optim import PeerAdamW, lr_at

__all__ = [
    "CheckpointError", "ConfigError", "Corpus", "LayerConfig", "ModelConfig", "PeerAdamW",
    "PeerModel", "TrainSettings", "forward_flops_per_token", "load_checkpoint",
    "load_trainer", "lr_at", "read_config", "run_config_from_json", "save_checkpoint",
    "save_trainer", "trainer_path",
]
