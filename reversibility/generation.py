"""Greedy generation for math-answer evaluation: batched, left-padded, with the KV cache."""

from __future__ import annotations

from typing import Sequence

import torch

from .tokenization import encode


@torch.no_grad()
def greedy_generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int,
                    max_prompt_tokens: int, stop: Sequence[str] = ()) -> list[str]:
    """The greedy continuation of each prompt (BOS + prompt, as in training), cut at the first
    stop string."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    outputs: list[str] = []
    for start in range(0, len(prompts), batch_size):
        encoded = encode(tokenizer, prompts[start: start + batch_size], max_prompt_tokens)
        width = max(map(len, encoded))
        input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(encoded):          # left padding: prompts end where generation starts
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention_mask[row, width - len(ids):] = 1
        generated = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                   max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                                   eos_token_id=tokenizer.eos_token_id)
        for row in generated[:, width:]:
            outputs.append(cut(tokenizer.decode(row, skip_special_tokens=True), stop))
    return outputs


def cut(text: str, stop: Sequence[str]) -> str:
    positions = [text.find(s) for s in stop if s and s in text]
    return text[: min(positions)] if positions else text
