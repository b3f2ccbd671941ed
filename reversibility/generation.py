"""Greedy generation for benchmark answers: batched, left-padded, with the KV cache, stopped at
the benchmark's stop strings."""

from __future__ import annotations

from typing import Sequence

import torch


def prompt_ids(tokenizer, prompt: str, budget: int) -> list[int]:
    """BOS (when the tokenizer has one) + the prompt's tokens, at most `budget` in all; a longer
    prompt loses its beginning, so that it still ends where the answer starts."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return bos + ids[max(0, len(ids) - (budget - len(bos))) :]


@torch.no_grad()
def greedy_generate(
    model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int, stop: Sequence[str] = ()
) -> list[str]:
    """The greedy continuation of each prompt, cut at the first stop string. Prompt and
    generation together stay within the model's positions."""
    device = next(model.parameters()).device
    positions = model.config.max_position_embeddings
    budget = positions - max_new_tokens
    if budget < 2:
        raise ValueError(
            f"a generation budget of {max_new_tokens} tokens leaves no room for a prompt in the "
            f"model's {positions} positions"
        )
    pad = tokenizer.pad_token_id
    outputs: list[str] = []
    for start in range(0, len(prompts), batch_size):
        encoded = [prompt_ids(tokenizer, prompt, budget) for prompt in prompts[start : start + batch_size]]
        width = max(map(len, encoded))
        input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(encoded):  # left padding: prompts end where generation starts
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        stopping = [StopInGeneration(tokenizer, stop, width)] if stop else None
        generated = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
            stopping_criteria=stopping,
        )
        for row in generated[:, width:]:
            outputs.append(cut(tokenizer.decode(row, skip_special_tokens=True), stop))
    return outputs


class StopInGeneration:
    """Stops a row once a stop string appears in its generated tokens. (transformers' own
    `stop_strings` also match across the prompt's end: a prompt ending in "\n" would stop a
    "\n\n" at once.) Only the last few tokens are decoded each step: every token holds at least
    one character, so a stop string just completed lies within its length in tokens."""

    def __init__(self, tokenizer, stop: Sequence[str], prompt_width: int):
        self.tokenizer, self.stop, self.prompt_width = tokenizer, [s for s in stop if s], prompt_width
        self.window = max(map(len, self.stop), default=0) + 1

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        start = max(self.prompt_width, input_ids.shape[1] - self.window)
        tails = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
        return torch.tensor([any(s in tail for s in self.stop) for tail in tails], device=input_ids.device)


def cut(text: str, stop: Sequence[str]) -> str:
    positions = [text.find(s) for s in stop if s and s in text]
    return text[: min(positions)] if positions else text
