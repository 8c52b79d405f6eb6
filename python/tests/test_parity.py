"""The PyTorch model against the engine, on a model with a block of every kind: dense; PEER with
per-head keys, batch-norm and GELU; PKM with shared keys and layer-norm; MoE; PEER with shared
keys, no norm and ReLU. The engine's side runs in peer-parity-dump (tests/peer-parity-dump.c),
found through PEER_PARITY_DUMP; `meson test` sets it.

Checked:
- a checkpoint the engine saved loads, and saves back byte for byte;
- on it, the logits, the loss and its parts, the experts chosen and their gates, in evaluation
  and in training mode, and the running statistics after the training forward;
- every gradient of one batch, the expert tables' included, and the global gradient norm;
- the trainer: the same losses, gradient norms and learning rates for three steps from the
  engine's fresh weights, then the same weights, Adam moments and batch-sampler state, and the
  expert rows no batch chose left bit for bit as they were;
- both ways across the trainer files: a run saved by PyTorch resumes in the engine, and a run
  saved by the engine resumes in PyTorch, to the same weights two steps on;
- files the loader must refuse.

Exits 77 (skipped) when torch is not installed.
"""

import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

try:
    import torch
except ImportError:
    print("torch is not installed (Debian: apt-get install python3-torch): skipped",
          file=sys.stderr)
    sys.exit(77)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import peer_workbench as pw  # noqa: E402
from peer_workbench import safetensors  # noqa: E402
from peer_workbench.checkpoint import contract_tensors  # noqa: E402
from peer_workbench.config import settings_from_json  # noqa: E402
from peer_workbench.train import Trainer  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[2]
CORPUS = REPOSITORY / "resources" / "corpus" / "austen.txt"

CONFIG = {
    "vocab_size": 256, "context": 16, "d_model": 32, "n_layers": 5, "n_heads": 2,
    "layers": [
        {"ffn": "dense", "d_ff": 64},
        {"ffn": "peer", "n_experts": 64, "heads": 2, "topk": 4, "d_key": 8,
         "shared_keys": False, "query_norm": "batch", "activation": "gelu"},
        {"ffn": "pkm", "n_memories": 64, "heads": 2, "topk": 3, "d_key": 8,
         "shared_keys": True, "query_norm": "layer"},
        {"ffn": "moe", "n_experts": 4, "topk": 2, "d_ff": 32},
        {"ffn": "peer", "n_experts": 400, "heads": 1, "topk": 2, "d_key": 6,
         "shared_keys": True, "query_norm": "none", "activation": "relu"},
    ],
}
# Clipping is active at these settings (the first gradient norms are above 1).
SETTINGS = {"batch_size": 4, "seq_len": 16, "steps": 10, "warmup": 2}
B, T = 4, 16
FIRST_STEPS, MORE_STEPS = 3, 2

# Float32 logits and losses computed in another order of sums: the bound.
FORWARD_TOLERANCE = 1e-4
# Each gradient, relative to its norm: the same bound; they agree to about 1e-6.
GRADIENT_TOLERANCE = 1e-4
# After a few Adam steps, the difference relative to how far each tensor moved. Adam divides by
# √v, which turns a gradient's relative rounding into the same relative change of the step; the
# steps agree to about 1e-5.
STEP_TOLERANCE = 1e-3


def rel(a, b):
    """‖a - b‖ / ‖b‖."""
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def noise_parts(cfg, with_running_means=False):
    """The gradients that are zero in exact arithmetic, so that rounding alone makes them: the
    key bias of attention (a softmax ignores a constant added to all of a query's scores) and a
    query bias ahead of batch-norm (which subtracts the batch mean); with with_running_means
    also the running means of those batch-norms, which follow the query bias. {name: slice}."""
    D = cfg.d_model
    parts = {}
    for l, layer in enumerate(cfg.layers):
        parts[f"blocks.{l}.attn.qkv.bias"] = slice(D, 2 * D)
        if layer.ffn in ("peer", "pkm") and layer.query_norm == "batch":
            parts[f"blocks.{l}.ffn.query.bias"] = slice(None)
            if with_running_means:
                parts[f"blocks.{l}.ffn.query_norm.running_mean"] = slice(None)
    return parts


def split(tensor, part):
    """(the exact part, the rounding-noise part) of a tensor, flattened."""
    if part is None:
        return tensor.reshape(-1), tensor.new_zeros(0)
    mask = torch.zeros(tensor.shape[0], dtype=torch.bool)
    mask[part] = True
    return tensor[~mask].reshape(-1), tensor[mask].reshape(-1)


def run_dump(*args):
    dump = os.environ.get("PEER_PARITY_DUMP")
    if not dump:
        raise RuntimeError("PEER_PARITY_DUMP is not set: run this test with `meson test -C "
                           "build torch-parity`")
    result = subprocess.run([dump, *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"peer-parity-dump {' '.join(map(str, args))} failed "
                             f"({result.returncode}): {result.stderr.strip()}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


class ParityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        cls.tmp = tempfile.TemporaryDirectory(prefix="peer-parity-")
        d = Path(cls.tmp.name)
        cls.dir = d
        (d / "config.json").write_text(json.dumps(CONFIG))
        (d / "settings.json").write_text(json.dumps(SETTINGS))
        text = CORPUS.read_bytes()[:40000]
        (d / "text.txt").write_bytes(text)
        batch = text[5000:5000 + B * (T + 1)]
        (d / "batch.bin").write_bytes(batch)
        window = torch.tensor(list(batch), dtype=torch.long).view(B, T + 1)
        cls.tokens, cls.targets = window[:, :T], window[:, 1:]

        # The engine: fresh weights, three training steps, then one batch's everything.
        run_dump("init", d / "config.json", 7, d / "c0.safetensors")
        cls.engine_steps = run_dump("train", d / "c0.safetensors", d / "text.txt",
                                    d / "settings.json", FIRST_STEPS, d / "c3.safetensors")
        run_dump("grads", d / "c3.safetensors", d / "batch.bin", B, T, d / "c3.grads")
        cls.grads, _ = safetensors.read(d / "c3.grads")
        cls.cfg = pw.ModelConfig.from_json(CONFIG)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def trainer_from(self, model_path, resume):
        model = pw.load_checkpoint(model_path)
        if resume:
            state = pw.load_trainer(pw.trainer_path(model_path), model.cfg)
            corpus = pw.Corpus.from_file(self.dir / "text.txt", state.settings.seq_len)
            trainer = Trainer(model, state.settings, corpus)
            trainer.restore(state)
        else:
            settings = settings_from_json(json.dumps(SETTINGS), model.cfg)
            corpus = pw.Corpus.from_file(self.dir / "text.txt", settings.seq_len)
            trainer = Trainer(model, settings, corpus)
        return trainer

    def assert_same_weights(self, model, engine_path, start_path, lr_sum, moments_path=None,
                            optimizer=None):
        """model's weights against the engine's file, each tensor's difference relative to how
        far it moved from start_path; the rounding-noise parts (and the running means that
        follow them) only within the learning rates' sum, the most Adam moves an element in
        these steps."""
        engine, _ = safetensors.read(engine_path)
        start, _ = safetensors.read(start_path)
        moments = safetensors.read(moments_path)[0] if moments_path else None
        state = model.state_dict()
        noise = noise_parts(model.cfg, with_running_means=True)
        for t in contract_tensors(model.cfg):
            part = noise.get(t.name)
            mine, theirs = split(state[t.name], part), split(engine[t.name], part)
            moved = split(engine[t.name] - start[t.name], part)[0]
            if mine[0].numel() and moved.norm() == 0:
                self.assertTrue(torch.equal(mine[0], theirs[0]), f"{t.name} should not move")
            elif mine[0].numel():
                error = ((mine[0] - theirs[0]).norm() / moved.norm()).item()
                self.assertLess(error, STEP_TOLERANCE, f"{t.name}: differs from the engine by "
                                f"{error:.2e} of its change {moved.norm().item():.3e}")
            if mine[1].numel():
                worst = (mine[1] - theirs[1]).abs().max().item()
                self.assertLess(worst, lr_sum, f"{t.name}: its rounding-driven part moved "
                                f"{worst:.2e} from the engine's, more than Adam can")
            if moments is None or t.buffer:
                continue
            for which, mine_m in (("m", optimizer.m), ("v", optimizer.v)):
                a = split(mine_m[t.name], part)[0]
                b = split(moments[f"adam.{which}.{t.name}"], part)[0]
                if b.norm() > 0:
                    self.assertLess(rel(a, b), STEP_TOLERANCE, f"adam.{which}.{t.name}")
                else:
                    self.assertEqual(a.norm().item(), 0.0, f"adam.{which}.{t.name}")

    # ---- files --------------------------------------------------------------------------------

    def test_engine_checkpoint_round_trip(self):
        model = pw.load_checkpoint(self.dir / "c3.safetensors")
        self.assertEqual(model.cfg.to_dict(), CONFIG)
        pw.save_checkpoint(model, self.dir / "copy.safetensors")
        self.assertEqual((self.dir / "copy.safetensors").read_bytes(),
                         (self.dir / "c3.safetensors").read_bytes(),
                         "a checkpoint saved after loading differs from the engine's file")

    def test_refuses_bad_files(self):
        with self.assertRaisesRegex(pw.CheckpointError, "not a peer-workbench file"):
            pw.load_checkpoint(self.dir / "c3.trainer.safetensors")
        data = (self.dir / "c3.safetensors").read_bytes()
        (self.dir / "short.safetensors").write_bytes(data[:-4])
        with self.assertRaisesRegex(pw.CheckpointError, "short.safetensors: .*run past the data"):
            pw.load_checkpoint(self.dir / "short.safetensors")
        # The same bytes under a config whose dense block is wider: the shapes disagree.
        (length,) = struct.unpack_from("<Q", data)
        header = data[8:8 + length].replace(b'\\"d_ff\\":64', b'\\"d_ff\\":65')
        header += b" " * (length - len(header))
        (self.dir / "wide.safetensors").write_bytes(data[:8] + header + data[8 + length:])
        with self.assertRaisesRegex(pw.CheckpointError, r"blocks\.0\.ffn\.fc\.weight\" has shape "
                                    r"\(64, 32\) but the config says \(65, 32\)"):
            pw.load_checkpoint(self.dir / "wide.safetensors")

    # ---- one batch ----------------------------------------------------------------------------

    def test_forward(self):
        model = pw.load_checkpoint(self.dir / "c3.safetensors")
        g = self.grads
        for mode in ("eval", "train"):
            model.train(mode == "train")
            with torch.no_grad():
                out = model(self.tokens, self.targets)
            error = rel(out.logits, g[f"{mode}.logits"])
            self.assertLess(error, FORWARD_TOLERANCE, f"{mode} logits differ by {error:.2e}")
            for name, value in (("loss", out.loss), ("cross_entropy", out.cross_entropy),
                                ("aux_loss", out.aux_loss)):
                error = rel(value.view(1), g[f"{mode}.{name}"])
                self.assertLess(error, FORWARD_TOLERANCE, f"{mode} {name}: {value.item()} "
                                f"against the engine's {g[f'{mode}.{name}'].item()}")
            for l, block in enumerate(model.blocks):
                if not isinstance(block.ffn, pw.model.ProductKeyLayer):
                    continue
                experts = g[f"{mode}.experts.{l}"].long()
                self.assertTrue(torch.equal(block.ffn.last_experts.view_as(experts), experts),
                                f"{mode}: layer {l} chose other experts than the engine")
                gates = block.ffn.last_gates.view_as(experts)
                self.assertLess(rel(gates, g[f"{mode}.gates.{l}"]), FORWARD_TOLERANCE)
        for name, buffer in model.named_buffers():
            error = rel(buffer, g[f"after.{name}"])
            self.assertLess(error, FORWARD_TOLERANCE, f"{name} after the training forward")

    def test_gradients(self):
        model = pw.load_checkpoint(self.dir / "c3.safetensors")
        model.train()
        # Blocks of a few tokens (and a last, shorter one) in the fused retrieval and expert
        # functions, as a large batch would have.
        block = pw.experts.BLOCK_FLOATS
        pw.experts.BLOCK_FLOATS = 1000
        try:
            model(self.tokens, self.targets).loss.backward()
        finally:
            pw.experts.BLOCK_FLOATS = block
        g = self.grads
        global_norm = g["grad_norm"].item()
        noise = noise_parts(model.cfg)
        for name, p in model.named_parameters():
            mine = p.grad.to_dense() if p.grad.is_sparse else p.grad
            if name.endswith((".down", ".up", ".values")):
                self.assertTrue(p.grad.is_sparse, f"{name}: the expert table's gradient is dense")
            exact, rounding = split(mine, noise.get(name))
            theirs, theirs_rounding = split(g[f"grad.{name}"], noise.get(name))
            if exact.numel():
                error = rel(exact, theirs)
                self.assertLess(error, GRADIENT_TOLERANCE, f"grad {name} differs by {error:.2e}")
            for which, part in (("PyTorch's", rounding), ("the engine's", theirs_rounding)):
                if part.numel():
                    self.assertLess(part.norm().item(), 1e-6 * global_norm,
                                    f"{which} gradient of {name} should be zero but rounding")
        optimizer = pw.PeerAdamW(model, settings_from_json("{}", model.cfg))
        self.assertLess(abs(optimizer.grad_norm() - global_norm) / global_norm,
                        GRADIENT_TOLERANCE)

    # ---- training -----------------------------------------------------------------------------

    def test_optimizer_steps(self):
        trainer = self.trainer_from(self.dir / "c0.safetensors", resume=False)
        lr_sum = 0.0
        for expected in self.engine_steps:
            trainer.train_step()
            lr_sum += trainer.last_lr
            self.assertEqual(trainer.step, expected["step"])
            for name, mine in (("loss", trainer.last_loss), ("grad_norm", trainer.last_grad_norm),
                               ("lr", trainer.last_lr)):
                self.assertLess(abs(mine - expected[name]) / expected[name], FORWARD_TOLERANCE,
                                f"step {trainer.step}: {name} {mine} against {expected[name]}")
        self.assert_same_weights(trainer.model, self.dir / "c3.safetensors",
                                 self.dir / "c0.safetensors", lr_sum,
                                 self.dir / "c3.trainer.safetensors", trainer.optimizer)
        _, meta = safetensors.read(self.dir / "c3.trainer.safetensors")
        self.assertEqual(f"{trainer.rng.state:016x}", meta["data_rng"])
        self.assertEqual(trainer.tokens, float(meta["tokens"]))
        self.assertEqual(trainer.flops, float(meta["flops"]))
        # Sparse Adam: rows no batch chose keep their weights and moments exactly.
        start, _ = safetensors.read(self.dir / "c0.safetensors")
        engine, _ = safetensors.read(self.dir / "c3.safetensors")
        state = trainer.model.state_dict()
        untouched_rows = 0
        for name, _ in trainer.model.expert_tables():
            untouched = (engine[name] == start[name]).all(dim=1)
            untouched_rows += int(untouched.sum())
            self.assertTrue(torch.equal(state[name][untouched], start[name][untouched]), name)
            self.assertTrue(torch.equal(trainer.optimizer.m[name][untouched],
                                        torch.zeros_like(start[name][untouched])), name)
        self.assertGreater(untouched_rows, 0, "every expert was chosen: use a larger pool")

    def test_pytorch_run_resumes_in_engine(self):
        trainer = self.trainer_from(self.dir / "c0.safetensors", resume=False)
        for _ in range(FIRST_STEPS):
            trainer.train_step()
        saved = self.dir / "p3.safetensors"
        pw.save_checkpoint(trainer.model, saved)
        pw.save_trainer(pw.trainer_path(saved), trainer.model, trainer.optimizer, trainer.state())

        # The engine loads PyTorch's model file and computes what PyTorch computes on it.
        run_dump("grads", saved, self.dir / "batch.bin", B, T, self.dir / "p3.grads")
        engine, _ = safetensors.read(self.dir / "p3.grads")
        model = pw.load_checkpoint(saved)
        model.eval()
        with torch.no_grad():
            out = model(self.tokens, self.targets)
        self.assertLess(rel(out.logits, engine["eval.logits"]), FORWARD_TOLERANCE)
        self.assertLess(rel(out.loss.view(1), engine["eval.loss"]), FORWARD_TOLERANCE)

        # Both continue the run from PyTorch's pair of files.
        steps = run_dump("resume", saved, self.dir / "text.txt", MORE_STEPS,
                         self.dir / "p5.safetensors")
        self.assertEqual([s["step"] for s in steps], [4, 5])
        lr_sum = 0.0
        for expected in steps:
            trainer.train_step()
            lr_sum += trainer.last_lr
            self.assertLess(abs(trainer.last_loss - expected["loss"]) / expected["loss"],
                            FORWARD_TOLERANCE)
        self.assert_same_weights(trainer.model, self.dir / "p5.safetensors", saved, lr_sum,
                                 self.dir / "p5.trainer.safetensors", trainer.optimizer)
        _, meta = safetensors.read(self.dir / "p5.trainer.safetensors")
        self.assertEqual(int(meta["step"]), 5)
        self.assertEqual(int(meta["optimizer_step"]), trainer.optimizer.step_count)
        self.assertEqual(meta["data_rng"], f"{trainer.rng.state:016x}")

    def test_engine_run_resumes_in_pytorch(self):
        trainer = self.trainer_from(self.dir / "c3.safetensors", resume=True)
        self.assertEqual((trainer.step, trainer.optimizer.step_count), (FIRST_STEPS, FIRST_STEPS))
        steps = run_dump("resume", self.dir / "c3.safetensors", self.dir / "text.txt",
                         MORE_STEPS, self.dir / "c5.safetensors")
        lr_sum = 0.0
        for expected in steps:
            trainer.train_step()
            lr_sum += trainer.last_lr
            self.assertEqual(trainer.step, expected["step"])
            self.assertLess(abs(trainer.last_loss - expected["loss"]) / expected["loss"],
                            FORWARD_TOLERANCE)
        self.assert_same_weights(trainer.model, self.dir / "c5.safetensors",
                                 self.dir / "c3.safetensors", lr_sum)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
