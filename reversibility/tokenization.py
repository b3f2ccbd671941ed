"""Tokenizers: a byte-level BPE trained on the domain for from-scratch models, and the shared
encoding of samples into padded batches.

Every sequence starts with the BOS token and is truncated to `max_length` tokens. Labels are the
input ids with padding set to -100, so losses and accuracies never count a pad token.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import torch

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
IGNORE_INDEX = -100


def train_bpe(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE (GPT-2 style) trained on `texts`, wrapped as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD)


def ensure_special_tokens(tokenizer) -> None:
    """Pretrained tokenizers often lack a pad token: reuse EOS (labels mask pads anyway)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def encode(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """BOS + the text's tokens, truncated to `max_length`."""
    bos = tokenizer.bos_token_id
    prefix = [bos] if bos is not None else []
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [(prefix + ids)[:max_length] for ids in encoded]


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T], 1 on real tokens
    labels: torch.Tensor  # [B, T], IGNORE_INDEX on pads
    # Under gradient accumulation, the real targets and sequences of all the optimiser step's
    # micro-batches that play this batch's role: losses divide their sums by these, so that the
    # step's micro-batches add up to one batch holding all their sequences. None: this batch alone.
    step_targets: int | None = None
    step_sequences: int | None = None

    def to(self, device) -> "Batch":
        if self.input_ids.device == torch.device(device):
            return self
        return replace(
            self,
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            labels=self.labels.to(device),
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def n_targets(self) -> int:
        """Real next-token targets: every label but the first, pads excluded."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())


def share_step_totals(batches: Sequence[Batch | None]) -> list[Batch | None]:
    """The micro-batches of one optimiser step in one role, each told the totals of them all
    (None entries, a role a method does not use, stay None)."""
    present = [batch for batch in batches if batch is not None]
    targets = sum(batch.n_targets() for batch in present)
    sequences = sum(len(batch) for batch in present)
    return [
        None if batch is None else replace(batch, step_targets=targets, step_sequences=sequences) for batch in batches
    ]


def collate(sequences: Sequence[Sequence[int]], pad_id: int) -> Batch:
    """Right-pad to the longest sequence of the batch."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
    return Batch(input_ids, attention_mask, labels)


def batches(sequences: Sequence[Sequence[int]], batch_size: int, pad_id: int) -> list[Batch]:
    """Consecutive batches in the given order (evaluation)."""
    return [collate(sequences[i : i + batch_size], pad_id) for i in range(0, len(sequences), batch_size)]
