"""The training program (peer_workbench.train) on one process and data-parallel on two (gloo on
the CPU, started by its --processes launcher as torchrun would start them), on a model with a
dense, a PEER (batch-norm), an MoE and a PKM block.

Checked:
- the two processes compute the step one process computes on the whole batch: the same losses,
  gradient norms and evaluations in the run log, the same weights and the same trainer file
  (the batch-norm statistics and the MoE balance are summed over the processes; the expert
  tables' sparse gradients gathered as rows for a large PEER table, all-reduced whole for a
  small PKM one);
- the two-process run folder opens as the workbench opens it (app/run-history.c, then a session
  on its checkpoint and trainer file), through peer-parity-dump's `open`;
- a batch that does not split over the processes is refused before any step.

Exits 77 (skipped) when torch, or its gloo backend, is missing.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

try:
    import torch
    import torch.distributed
except ImportError:
    print("torch is not installed (Debian: apt-get install python3-torch): skipped",
          file=sys.stderr)
    sys.exit(77)
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    print("this torch has no gloo backend for torch.distributed: skipped", file=sys.stderr)
    sys.exit(77)

PYTHON_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PYTHON_ROOT))

import peer_workbench as pw  # noqa: E402
from peer_workbench import safetensors  # noqa: E402
from peer_workbench import train  # noqa: E402
from peer_workbench.checkpoint import contract_tensors  # noqa: E402

CORPUS = PYTHON_ROOT.parent / "resources" / "corpus" / "austen.txt"
RUN = {
    "model": {
        "vocab_size": 256, "context": 16, "d_model": 32, "n_layers": 4, "n_heads": 2,
        "layers": [
            {"ffn": "dense", "d_ff": 64},
            # Few of its rows are chosen: their sparse gradients travel as lists of rows.
            {"ffn": "peer", "n_experts": 1024, "heads": 2, "topk": 4, "d_key": 8,
             "shared_keys": False, "query_norm": "batch", "activation": "gelu"},
            {"ffn": "moe", "n_experts": 4, "topk": 2, "d_ff": 32},
            # All of its rows are chosen: its gradient is all-reduced as a whole table.
            {"ffn": "pkm", "n_memories": 16, "heads": 2, "topk": 2, "d_key": 8,
             "shared_keys": True, "query_norm": "batch"},
        ],
    },
    # Adam's eps at 1e-6: see test_checkpoints_agree.
    "training": {"batch_size": 4, "seq_len": 16, "steps": 4, "warmup": 1, "eps": 1e-6,
                 "eval_interval": 2, "eval_windows": 4},
}
# Two processes sum in another order than one: float rounding, about 1e-7 here.
TOLERANCE = 1e-4


class DistributedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="peer-distributed-")
        d = Path(cls.tmp.name)
        cls.dir = d
        (d / "run.json").write_text(json.dumps(RUN))
        (d / "text.txt").write_bytes(CORPUS.read_bytes()[:40000])
        common = ["--config", str(d / "run.json"), "--text", str(d / "text.txt"),
                  "--log-interval", "1", "--threads", "1", "--quiet"]
        env = dict(os.environ, PYTHONPATH=str(PYTHON_ROOT))
        two = subprocess.Popen([sys.executable, "-m", "peer_workbench.train", "--processes", "2",
                                "--run-dir", str(d / "two"), *common], env=env,
                               stderr=subprocess.PIPE, text=True)
        cls.one_status = train.main([*common, "--run-dir", str(d / "one")])
        _, cls.two_errors = two.communicate()
        cls.two_status = two.returncode

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        self.assertEqual(self.one_status, 0, "the one-process run failed")
        self.assertEqual(self.two_status, 0, f"the two-process run failed: {self.two_errors}")

    def read_log(self, run):
        lines = (self.dir / run / "log.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def test_logs_agree(self):
        one, two = self.read_log("one"), self.read_log("two")
        self.assertEqual([(l["type"], l["step"]) for l in one],
                         [("step", 1), ("step", 2), ("eval", 2), ("step", 3), ("step", 4),
                          ("eval", 4)])
        self.assertEqual([(l["type"], l["step"]) for l in two], [(l["type"], l["step"])
                                                                for l in one])
        for a, b in zip(one, two):
            keys = ("loss", "grad_norm", "lr") if a["type"] == "step" else ("loss",)
            for key in keys:
                self.assertLess(abs(a[key] - b[key]) / abs(a[key]), TOLERANCE,
                                f"{a['type']} at step {a['step']}: {key} {a[key]} on one "
                                f"process, {b[key]} on two")
            if a["type"] == "step":
                self.assertEqual((a["tokens"], a["flops"]), (b["tokens"], b["flops"]))
            else:
                for layer_a, layer_b in zip(a["layers"], b["layers"]):
                    self.assertAlmostEqual(layer_a["usage"], layer_b["usage"])

    def test_checkpoints_agree(self):
        one, _ = safetensors.read(self.dir / "one" / "model.safetensors")
        two, _ = safetensors.read(self.dir / "two" / "model.safetensors")
        cfg = pw.ModelConfig.from_json(RUN["model"])
        settings = pw.TrainSettings.defaults(cfg).updated(RUN["training"], cfg)
        lr_sum = sum(pw.lr_at(settings, step) for step in range(settings.steps))
        # Some gradients are zero in exact arithmetic and rounding alone makes them, differently
        # in the two runs (attention's key bias; a query bias, and the ln2 bias of a block whose
        # only path is the query, ahead of batch-norm). Their rounding is below 1e-9, so with
        # eps 1e-6 Adam moves them by at most lr·1e-3 a step; every element may differ by that
        # much besides the relative rounding of the whole tensor.
        rounding_steps = 1e-3 * lr_sum
        for t in contract_tensors(cfg):
            a, b = one[t.name], two[t.name]
            bound = TOLERANCE * a.square().mean().sqrt().item() + rounding_steps
            worst = (a - b).abs().max().item()
            self.assertLess(worst, bound, f"{t.name}: one and two processes differ by up to "
                            f"{worst:.2e}")
        _, meta_one = safetensors.read(self.dir / "one" / "model.trainer.safetensors")
        _, meta_two = safetensors.read(self.dir / "two" / "model.trainer.safetensors")
        for key in ("step", "optimizer_step", "tokens", "flops", "data_rng", "settings"):
            self.assertEqual(meta_one[key], meta_two[key], key)

    def test_workbench_opens_run_folder(self):
        dump = os.environ.get("PEER_PARITY_DUMP")
        if not dump:
            self.skipTest("PEER_PARITY_DUMP is not set: run through `meson test`")
        result = subprocess.run([dump, "open", str(self.dir / "two"), str(self.dir / "text.txt")],
                                capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)
        report = json.loads(result.stdout)
        last = self.read_log("two")[-2]
        self.assertEqual(report["has_config"], True)
        self.assertEqual(report["loss_points"], 4)
        self.assertEqual(report["eval_points"], 2)
        self.assertEqual(report["last_step"], 4)
        self.assertAlmostEqual(report["last_loss"], last["loss"], places=6)
        self.assertEqual(report["checkpoint"], True)
        self.assertEqual(report["session_step"], 4)

    def test_refuses_uneven_batch(self):
        cfg, settings = pw.run_config_from_json(json.dumps(RUN))
        corpus = pw.Corpus.from_file(self.dir / "text.txt", settings.seq_len)

        class ThreeProcesses:
            rank, world, stats_group = 0, 3, None

        with self.assertRaisesRegex(pw.ConfigError, "batch_size = 4 does not split over 3 "
                                    "processes: use a multiple of 3"):
            train.Trainer(pw.PeerModel(cfg), settings, corpus, ThreeProcesses())


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
