"""Training text and batches as the engine draws them (engine/corpus.c, engine/rng.c), so that a
run here and a run in the workbench see the same bytes in the same order.

A text is split once: the first 90 % trains, the rest validates. A training batch is B windows
of T + 1 bytes at offsets drawn from a SplitMix64 stream seeded with seed ^ 0x5eed0fba7c4e5; the
validation windows are consecutive from the start of the validation part.
"""

import os

import torch

VALIDATION_FRACTION = 0.1
DATA_SEED_MIX = 0x5EED0FBA7C4E5
MASK64 = (1 << 64) - 1


class CorpusError(ValueError):
    """A text the engine would refuse, with the reason and what to give instead."""


class SplitMix64:
    """The engine's generator (peer_rng): one 64-bit state."""

    def __init__(self, state):
        self.state = state & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)


def data_rng(seed):
    """The batch-order stream of a run with this seed."""
    return SplitMix64(seed ^ DATA_SEED_MIX)


class Corpus:
    def __init__(self, data, seq_len, name="the text"):
        size = len(data)
        if size == 0:
            raise CorpusError(f"{name} is empty: give a UTF-8 text file")
        if b"\0" in data:
            raise CorpusError(f"{name} does not look like UTF-8 text (it holds a NUL byte): give "
                              "a plain text file")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise CorpusError(f"{name} does not look like UTF-8 text (byte "
                              f"0x{data[error.start]:02x} at offset {error.start}): give a plain "
                              "text file") from None
        validation = int(size * VALIDATION_FRACTION)
        need = seq_len + 1
        if validation < need or size - validation < need:
            raise CorpusError(f"{name} holds {size} bytes, too short for sequences of {seq_len} "
                              f"bytes: the last 10 % is kept for validation and each part needs "
                              f"at least {need} bytes")
        self.bytes = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        self.size = size
        self.train_size = size - validation

    @classmethod
    def from_file(cls, path, seq_len):
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError as error:
            raise CorpusError(f"cannot open the text {path}: {error.strerror}") from None
        return cls(data, seq_len, name=os.fspath(path))

    def train_offsets(self, rng, B, T):
        """The offsets of the next B training windows (the stream advances by B draws)."""
        starts = self.train_size - T
        return [rng.next() % starts for _ in range(B)]

    def windows(self, offsets, T, device=None):
        """tokens and targets (len(offsets), T) int64 for windows starting at offsets."""
        base = torch.tensor(offsets, dtype=torch.long).unsqueeze(1)
        window = self.bytes[base + torch.arange(T + 1)].long()
        return window[:, :T].to(device), window[:, 1:].to(device)

    def validation_windows(self, T):
        return (self.size - self.train_size) // (T + 1)

    def validation_offsets(self, first, count, T):
        return [self.train_size + (first + i) * (T + 1) for i in range(count)]
