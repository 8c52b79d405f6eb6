"""Training the contract's model with PyTorch, on one device or data-parallel over several with
torch.distributed, writing what peer-train writes so the workbench opens the result: a run
folder with config.json (the run file), log.jsonl (the run log, app/run-log.h) and the
checkpoint model.safetensors with its trainer file.

One process, the engine's loop: the same batches (data.py), the same schedule, clipping and
optimiser (optim.py), the same evaluation. Under torchrun (or --processes, which starts the
processes of one machine as torchrun does) every process draws the same global batch of
batch_size sequences and trains on its share of them; DistributedDataParallel averages
the dense gradients, the expert tables' sparse gradients are gathered and averaged here, and the
query batch-norm and the MoE load balancing sum their statistics over all processes, so that N
processes compute the step one process would compute on the whole batch, and a run saved here
continues in the workbench, and the other way round.

    python3 -m peer_workbench.train --preset peer-small --run-dir runs/a
    python3 -m peer_workbench.train --processes 4 --config run.json --run-dir runs/b
    torchrun --nnodes 2 --nproc_per_node 8 ... -m peer_workbench.train --config run.json
"""

import argparse
import json
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import torch

from .checkpoint import (CheckpointError, TrainerState, load_checkpoint, load_trainer,
                         read_config, save_checkpoint, save_trainer, trainer_path)
from .config import ConfigError, float32, run_config_from_json
from .data import Corpus, CorpusError, data_rng
from .model import PeerModel, ProductKeyLayer, forward_flops_per_token
from .optim import PeerAdamW, lr_at

PROGRAM = "peer_workbench.train"
REPOSITORY = Path(__file__).resolve().parents[2]
PRESETS = REPOSITORY / "resources" / "runs"
DEFAULT_TEXT = REPOSITORY / "resources" / "corpus" / "austen.txt"
RUN_CONFIG_FILE = "config.json"
RUN_LOG_FILE = "log.jsonl"
RUN_MODEL_FILE = "model.safetensors"
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class TrainingError(RuntimeError):
    """A step that cannot be taken (a loss or gradient that is not finite), with advice."""


class Distributed:
    """This process's place among the data-parallel processes of torchrun."""

    def __init__(self, rank, world, device):
        import torch.distributed as dist
        self.rank, self.world, self.device = rank, world, device
        # The statistics sums run in the forward and the backward, beside the gradient
        # all-reduces of DistributedDataParallel: a group of their own keeps the orders apart.
        self.stats_group = dist.new_group()

    def all_reduce_sum(self, value):
        import torch.distributed as dist
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.item()

    def barrier(self):
        import torch.distributed as dist
        dist.barrier()


def shortest_float(x):
    """A float setting as the shortest decimal that reads back as the same float, as the
    engine's JSON has it (json_output_float)."""
    if not math.isfinite(x):
        return None
    for digits in range(1, 18):
        text = f"{x:.{digits}g}"
        if struct.unpack("<f", struct.pack("<f", float(text)))[0] == x:
            return float(text)
    return x


def json_number(x):
    return x if math.isfinite(x) else None


def reduce_sparse_grads(model, world):
    """Averages the expert tables' sparse gradients over the processes. The rows chosen
    anywhere are the rows every process then updates, as one process would on the whole batch.
    Few rows travel as lists (each process gathers every process's rows, padded to the longest
    list); when the lists would outweigh the table, as at a million experts and large batches,
    the table's gradient and a mask of its chosen rows are all-reduced whole instead."""
    import torch.distributed as dist
    for _, table in model.expert_tables():
        N, D = table.shape
        if table.grad is None:
            rows, values = table.new_zeros(0, dtype=torch.long), table.new_zeros(0, D)
        else:
            grad = table.grad.coalesce()
            rows, values = grad.indices()[0], grad.values()
        count = torch.tensor([rows.numel()], device=table.device)
        counts = [torch.zeros_like(count) for _ in range(world)]
        dist.all_gather(counts, count)
        counts = [int(c.item()) for c in counts]
        longest = max(counts)
        if world * longest * (D + 1) >= 2 * N * D:
            dense = table.new_zeros(N, D)
            dense[rows] = values
            chosen = table.new_zeros(N)
            chosen[rows] = 1.0
            dist.all_reduce(dense)
            dist.all_reduce(chosen)
            rows = chosen.nonzero().squeeze(1)
            values = dense[rows] / world
        else:
            padded_rows = rows.new_zeros(longest)
            padded_rows[:rows.numel()] = rows
            padded_values = values.new_zeros(longest, D)
            padded_values[:rows.numel()] = values
            all_rows = [torch.empty_like(padded_rows) for _ in range(world)]
            all_values = [torch.empty_like(padded_values) for _ in range(world)]
            dist.all_gather(all_rows, padded_rows)
            dist.all_gather(all_values, padded_values)
            rows = torch.cat([r[:c] for r, c in zip(all_rows, counts)])
            values = torch.cat([v[:c] for v, c in zip(all_values, counts)]) / world
        table.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), values, (N, D)).coalesce()


class Trainer:
    """The engine's trainer (engine/trainer.c) over a PeerModel; with distributed set, one of
    the data-parallel processes."""

    def __init__(self, model, settings, corpus, distributed=None):
        self.model = model
        self.settings = settings
        self.corpus = corpus
        self.distributed = distributed
        self.device = model.tok_emb.device
        model.moe_aux_weight = settings.moe_aux_weight
        self.optimizer = PeerAdamW(model, settings)
        self.rng = data_rng(settings.seed)
        self.step = 0
        self.tokens = 0.0
        self.flops = 0.0
        self.last_loss = math.nan
        self.last_grad_norm = math.nan
        self.last_lr = math.nan
        self.net = model
        if distributed and distributed.world > 1:
            if settings.batch_size % distributed.world:
                raise ConfigError(f"batch_size = {settings.batch_size} does not split over "
                                  f"{distributed.world} processes: use a multiple of "
                                  f"{distributed.world}")
            from torch.nn.parallel import DistributedDataParallel as DDP
            model.set_sync_group(distributed.stats_group)
            # Every process starts from rank 0's weights, expert tables included.
            import torch.distributed as dist
            with torch.no_grad():
                for tensor in model.state_dict().values():
                    dist.broadcast(tensor, 0)
            DDP._set_params_and_buffers_to_ignore_for_model(
                model, [name for name, _ in model.expert_tables()])
            self.net = DDP(model, device_ids=[self.device] if self.device.type == "cuda" else None,
                           broadcast_buffers=False)

    def restore(self, state):
        """Continues a run from a TrainerState (load_trainer)."""
        self.optimizer.load_moments(state.moments_m, state.moments_v, state.optimizer_step)
        self.step = state.step
        self.tokens = state.tokens
        self.flops = state.flops
        self.rng.state = state.data_rng

    def state(self):
        return TrainerState(settings=self.settings, step=self.step,
                            optimizer_step=self.optimizer.step_count, tokens=self.tokens,
                            flops=self.flops, data_rng=self.rng.state, moments_m=self.optimizer.m,
                            moments_v=self.optimizer.v)

    def _local_share(self, offsets):
        d = self.distributed
        if not d or d.world == 1:
            return offsets
        share = len(offsets) // d.world
        return offsets[d.rank * share:(d.rank + 1) * share]

    def _global_mean(self, value):
        d = self.distributed
        if not d or d.world == 1:
            return value
        return d.all_reduce_sum(value) / d.world

    def train_step(self):
        """One optimiser step. A loss or gradient that is not finite leaves every weight as it
        was and raises TrainingError."""
        s = self.settings
        B, T = s.batch_size, s.seq_len
        offsets = self.corpus.train_offsets(self.rng, B, T)
        tokens, targets = self.corpus.windows(self._local_share(offsets), T, self.device)
        saved_buffers = [b.clone() for b in self.model.buffers()]
        self.model.train()
        out = self.net(tokens, targets)
        loss = self._global_mean(out.loss.item())
        lr = lr_at(s, self.step)
        if not math.isfinite(loss):
            self._restore_buffers(saved_buffers)
            raise TrainingError(f"the loss became {'NaN' if math.isnan(loss) else 'infinite'} at "
                                f"step {self.step + 1}: training stopped with the weights of step "
                                f"{self.step}; lower the learning rate (now {lr:g}) or the "
                                "gradient clip")
        self.optimizer.zero_grad()
        out.loss.backward()
        if self.distributed and self.distributed.world > 1:
            reduce_sparse_grads(self.model, self.distributed.world)
        norm = self.optimizer.grad_norm()
        if not math.isfinite(norm):
            self._restore_buffers(saved_buffers)
            raise TrainingError(f"the gradient became {'NaN' if math.isnan(norm) else 'infinite'} "
                                f"at step {self.step + 1}: training stopped with the weights of "
                                f"step {self.step}; lower the learning rate (now {lr:g})")
        scale = s.grad_clip / norm if s.grad_clip > 0.0 and norm > s.grad_clip else 1.0
        self.optimizer.step(lr, s.expert_lr, scale)
        self.step += 1
        self.tokens += B * T
        self.flops += 3.0 * forward_flops_per_token(self.model.cfg, T) * B * T
        self.last_loss = self._global_mean(out.cross_entropy.item())
        self.last_grad_norm = norm
        self.last_lr = float32(lr)

    def _restore_buffers(self, saved):
        with torch.no_grad():
            for buffer, value in zip(self.model.buffers(), saved):
                buffer.copy_(value)

    @torch.no_grad()
    def evaluate(self, windows):
        """Validation loss on the first `windows` windows (evaluation mode: batch-norm uses its
        running statistics) with the usage and unevenness of every PEER and PKM layer, as the
        run log's evaluation lines hold them."""
        model, cfg = self.model, self.model.cfg
        T, B = self.settings.seq_len, self.settings.batch_size
        available = self.corpus.validation_windows(T)
        if not 1 <= windows <= available:
            raise ConfigError(f"{windows} validation windows asked for, but the validation text "
                              f"holds {available} windows of {T + 1} bytes: use 1 to {available}")
        layers = [(l, block.ffn) for l, block in enumerate(model.blocks)
                  if isinstance(block.ffn, ProductKeyLayer)]
        mass = {l: torch.zeros(ffn.heads * ffn.n * ffn.n, dtype=torch.float64,
                               device=self.device) for l, ffn in layers}
        was_training = model.training
        model.eval()
        loss_sum, tokens = 0.0, 0
        for first in range(0, windows, B):
            count = min(B, windows - first)
            inputs, targets = self.corpus.windows(
                self.corpus.validation_offsets(first, count, T), T, self.device)
            out = model(inputs, targets)
            loss_sum += out.cross_entropy.item() * count * T
            tokens += count * T
            for l, ffn in layers:
                N = ffn.n * ffn.n
                head = torch.arange(ffn.heads, device=self.device).view(1, -1, 1)
                cells = (ffn.last_experts + head * N).reshape(-1)
                mass[l].index_add_(0, cells, ffn.last_gates.reshape(-1).double())
        model.train(was_training)
        report = {"loss": loss_sum / tokens}
        report["bits_per_byte"] = report["loss"] / math.log(2.0)
        report["perplexity"] = math.exp(report["loss"])
        report["tokens"] = tokens
        report["layers"] = []
        for l, ffn in layers:
            N = ffn.n * ffn.n
            z = mass[l].view(ffn.heads, N).sum(dim=0)
            total = z.sum().item()
            used = int((z > 0).sum().item())
            unevenness = 0.0
            if total > 0.0:
                p = z[z > 0] / total
                unevenness = math.log(N) + (p * p.log()).sum().item()
            report["layers"].append({"layer": l, "kind": cfg.layers[l].ffn, "experts": N,
                                     "usage": used / N, "unevenness": unevenness,
                                     "dead": N - used})
        return report


# ---- the run folder --------------------------------------------------------------------------

class RunLog:
    """log.jsonl: one JSON object a line, flushed as written (app/run-log.h)."""

    def __init__(self, path, append):
        self.path = path
        self.file = open(path, "a" if append else "w", encoding="utf-8")

    def write(self, obj):
        self.file.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
        self.file.flush()

    def step(self, trainer, tokens_per_second, seconds):
        self.write({"type": "step", "step": trainer.step,
                    "loss": json_number(trainer.last_loss),
                    "lr": shortest_float(trainer.last_lr),
                    "grad_norm": json_number(trainer.last_grad_norm),
                    "tokens": int(trainer.tokens), "flops": json_number(trainer.flops),
                    "tokens_per_second": json_number(tokens_per_second),
                    "time": json_number(seconds)})

    def evaluation(self, step, report):
        line = {"type": "eval", "step": step}
        for key, value in report.items():
            line[key] = json_number(value) if isinstance(value, float) else value
        for layer in line["layers"]:
            for key in ("usage", "unevenness"):
                layer[key] = json_number(layer[key])
        self.write(line)

    def close(self):
        self.file.close()


def write_run_config(path, cfg, settings):
    training = {key: shortest_float(value) if isinstance(value, float) else value
                for key, value in settings.to_dict().items()}
    text = json.dumps({"model": cfg.to_dict(), "training": training}, indent=2)
    temp = f"{path}.tmp"
    with open(temp, "w", encoding="utf-8") as file:
        file.write(text + "\n")
    os.replace(temp, path)


# ---- the program ----------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Trains the PEER Workbench model (dense, PEER, PKM and MoE blocks) with "
                    "PyTorch, on one device or data-parallel under torchrun, and writes a run "
                    "folder and checkpoints the workbench opens.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE",
                        help="run file {\"model\": ..., \"training\": ...}")
    source.add_argument("--preset", metavar="NAME",
                        help="a built-in run of resources/runs (default peer-small)")
    source.add_argument("--resume", metavar="FILE",
                        help="continue the run saved in FILE and its trainer file")
    parser.add_argument("--text", metavar="FILE",
                        help="UTF-8 training text (default resources/corpus/austen.txt)")
    parser.add_argument("--run-dir", metavar="DIR",
                        help="write DIR/config.json, DIR/log.jsonl and DIR/model.safetensors")
    parser.add_argument("--save", metavar="FILE", help="also save the checkpoint to FILE")
    options = [
        ("--steps", int, "N", "length of the run in steps"),
        ("--batch-size", int, "B", "sequences per step, over all processes"),
        ("--lr", float, "X", "peak learning rate of the dense parameters"),
        ("--expert-lr", float, "X", "learning rate of the expert tables"),
        ("--seed", int, "N", "initial weights and batch order"),
        ("--eval-interval", int, "N", "steps between evaluations (0: none)"),
        ("--eval-windows", int, "N", "validation windows per evaluation"),
        ("--save-interval", int, "N", "also save every N steps"),
        ("--threads", int, "N", "CPU threads for torch, per process"),
    ]
    for flag, kind, metavar, text in options:
        parser.add_argument(flag, type=kind, metavar=metavar, help=text)
    parser.add_argument("--log-interval", type=int, default=10, metavar="N",
                        help="steps between log lines (default 10)")
    parser.add_argument("--device", metavar="DEVICE",
                        help="cpu, cuda or cuda:N (default: this process's GPU under torchrun "
                             "or --processes, else cuda when present, else cpu)")
    parser.add_argument("--processes", type=int, default=1, metavar="N",
                        help="data-parallel processes on this machine, one per GPU when there "
                             "are GPUs (several machines: start each with torchrun instead)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    for name in ("steps", "eval_interval", "eval_windows", "batch_size", "log_interval",
                 "save_interval", "threads", "processes"):
        value = getattr(args, name)
        minimum = 0 if name in ("steps", "eval_interval") else 1
        if value is not None and value < minimum:
            parser.error(f"--{name.replace('_', '-')} {value}: use {minimum} or more")
    return args


def apply_overrides(settings, args, cfg):
    changes = {}
    for name in ("steps", "batch_size", "seed", "eval_interval", "eval_windows"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    for name in ("lr", "expert_lr"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    return settings.updated(changes, cfg) if changes else settings


def choose_device(args, local_rank):
    if args.device:
        return torch.device(args.device)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def report_failure(message, status=EXIT_FAILURE):
    print(f"{PROGRAM}: {message}", file=sys.stderr)
    return status


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(processes, argv):
    """Starts the data-parallel processes on this machine as torchrun would (the environment
    variables of torch.distributed's env:// rendezvous) and waits for them. Ctrl-C reaches
    them all, and they stop together between two steps and save."""
    port = str(free_port())
    children = []
    for rank in range(processes):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(rank),
                   LOCAL_RANK=str(rank), WORLD_SIZE=str(processes),
                   LOCAL_WORLD_SIZE=str(processes))
        children.append(subprocess.Popen([sys.executable, "-m", "peer_workbench.train", *argv],
                                         env=env))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    status = 0
    pending = list(children)
    while pending:
        for child in list(pending):
            code = child.poll()
            if code is None:
                continue
            pending.remove(child)
            if code != 0 and status == 0:
                status = code
                for other in pending:
                    other.terminate()
        time.sleep(0.05)
    return status if status >= 0 else EXIT_FAILURE


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.processes > 1 and "RANK" not in os.environ:
        return launch(args.processes, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(args, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    distributed = None
    if world > 1:
        import torch.distributed as dist
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        distributed = Distributed(rank, world, device)
    try:
        return run(args, device, distributed)
    finally:
        if distributed:
            import torch.distributed as dist
            dist.destroy_process_group()


def run(args, device, distributed):
    main_process = distributed is None or distributed.rank == 0
    say = print if main_process and not args.quiet else (lambda *a, **k: None)

    def fail(message, status=EXIT_FAILURE):
        # Every process meets the same inputs: the first one speaks for all.
        return report_failure(message, status) if main_process else status
    state = None
    try:
        if args.resume:
            cfg = read_config(args.resume)
            model = load_checkpoint(args.resume, device=device)
            state = load_trainer(trainer_path(args.resume), cfg)
            settings = apply_overrides(state.settings, args, cfg)
        else:
            if args.config:
                text = Path(args.config).read_text(encoding="utf-8")
            else:
                preset = PRESETS / f"{args.preset or 'peer-small'}.json"
                if not preset.is_file():
                    names = sorted(p.stem for p in PRESETS.glob("*.json"))
                    return fail(f"no preset {args.preset!r}: use one of {', '.join(names)}",
                                EXIT_USAGE)
                text = preset.read_text(encoding="utf-8")
            cfg, settings = run_config_from_json(text)
            settings = apply_overrides(settings, args, cfg)
            model = PeerModel(cfg, device=device, seed=settings.seed)
        text_path = args.text or DEFAULT_TEXT
        corpus = Corpus.from_file(text_path, settings.seq_len)
        trainer = Trainer(model, settings, corpus, distributed)
        if state:
            trainer.restore(state)
    except (ConfigError, CheckpointError, CorpusError) as error:
        return fail(str(error), EXIT_USAGE if isinstance(error, ConfigError) else EXIT_FAILURE)
    except OSError as error:
        return fail(f"{error.filename}: {error.strerror}")

    log = None
    if args.run_dir and main_process:
        os.makedirs(args.run_dir, exist_ok=True)
        write_run_config(os.path.join(args.run_dir, RUN_CONFIG_FILE), cfg, settings)
        log = RunLog(os.path.join(args.run_dir, RUN_LOG_FILE), append=state is not None)
    targets = [p for p in (args.save, args.run_dir and os.path.join(args.run_dir, RUN_MODEL_FILE))
               if p]

    def save():
        if main_process:
            for path in targets:
                save_checkpoint(model, path)
                save_trainer(trainer_path(path), model, trainer.optimizer, trainer.state())
        if distributed:
            distributed.barrier()

    def evaluate():
        report = trainer.evaluate(settings.eval_windows) if main_process else None
        if main_process:
            say(f"eval at step {trainer.step}: val loss {report['loss']:.4f} nats, "
                f"{report['bits_per_byte']:.4f} bits/byte")
            for layer in report["layers"]:
                say(f"  layer {layer['layer']} {layer['kind']}: usage "
                    f"{100 * layer['usage']:.1f}% of {layer['experts']} experts, unevenness "
                    f"{layer['unevenness']:.3f} nats")
            if log:
                log.evaluation(trainer.step, report)
        if distributed:
            distributed.barrier()

    stop = []
    previous = {number: signal.signal(number, lambda signum, frame: stop.append(signum))
                for number in (signal.SIGINT, signal.SIGTERM)}

    started = time.monotonic()
    window_seconds, window_tokens = 0.0, 0.0
    try:
        while trainer.step < settings.steps:
            stopping = bool(stop)
            if distributed:
                stopping = distributed.all_reduce_sum(stopping) > 0
            if stopping:
                save()
                if main_process:
                    print(f"{PROGRAM}: stopped at step {trainer.step} of {settings.steps}" +
                          (f"; --resume {targets[0]} continues the run" if targets else ""),
                          file=sys.stderr)
                return EXIT_INTERRUPTED
            t0 = time.monotonic()
            tokens_before = trainer.tokens
            trainer.train_step()
            window_seconds += time.monotonic() - t0
            window_tokens += trainer.tokens - tokens_before
            last = trainer.step == settings.steps
            if trainer.step % args.log_interval == 0 or last:
                speed = window_tokens / window_seconds if window_seconds > 0 else 0.0
                say(f"step {trainer.step}/{settings.steps}  loss {trainer.last_loss:.4f}  "
                    f"lr {trainer.last_lr:.3g}  grad norm {trainer.last_grad_norm:.3f}  "
                    f"{speed:,.0f} tokens/s")
                if log:
                    log.step(trainer, speed, time.monotonic() - started)
                window_seconds, window_tokens = 0.0, 0.0
            if not last and settings.eval_interval and trainer.step % settings.eval_interval == 0:
                evaluate()
            if not last and args.save_interval and trainer.step % args.save_interval == 0:
                save()
        evaluate()
        save()
    except TrainingError as error:
        save()
        return fail(f"{error}" + (f" (saved the weights of step {trainer.step})"
                                  if targets else ""))
    except ConfigError as error:
        return fail(str(error), EXIT_USAGE)
    except OSError as error:
        return fail(f"{error.filename or 'a file'}: {error.strerror}")
    finally:
        if log:
            log.close()
        for number, handler in previous.items():
            signal.signal(number, handler)
    for path in targets:
        say(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
