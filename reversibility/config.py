"""Checks and helpers on a validated config (the JSON schema has already filled defaults).

The schema rejects wrong types and unknown keys; these checks catch what a schema cannot see:
references between sections, methods that exist in code, and sizes that cannot fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Any, Iterator, Mapping

STAGES = ("unlearned", "relearned")


class ConfigError(ValueError):
    """A config that cannot run; the message names the key."""


@dataclass(frozen=True)
class Cell:
    model: str
    dataset: str
    method: str
    n_requests: int
    learning_rate: float

    @property
    def key(self) -> str:
        """The cell's path below results/runs/: {model}/{dataset}/{method}/n{N}/lr{lr}."""
        return f"{self.model}/{self.dataset}/{self.method}/n{self.n_requests}/lr{lr_label(self.learning_rate)}"


def lr_label(learning_rate: float) -> str:
    """The learning rate as it appears in paths: shortest %g form (1e-05, 0.0001, 0.001)."""
    return f"{float(learning_rate):g}"


def canonical(value: Any) -> Any:
    """The value with every mapping's keys sorted, recursively.

    Snakemake reruns a job when the repr of its params changes; sorting makes that repr depend
    on the values only, not on the order of keys in a YAML file.
    """
    if isinstance(value, Mapping):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    return value


def cells(config: Mapping[str, Any]) -> Iterator[Cell]:
    grid = config["grid"]
    for experiment in config["experiments"]:
        for method, n, lr in product(grid["methods"], grid["n_requests"], grid["learning_rates"]):
            yield Cell(experiment["model"], experiment["dataset"], method, n, lr)


def check(config: Mapping[str, Any]) -> None:
    from .methods import METHODS

    grid = config["grid"]
    for index, experiment in enumerate(config["experiments"]):
        for section, name in (("models", experiment["model"]), ("datasets", experiment["dataset"])):
            if name not in config[section]:
                raise ConfigError(f"experiments[{index}].{section[:-1]}: {name!r} is not defined under "
                                  f"'{section}' (defined: {', '.join(sorted(config[section])) or 'none'})")
        dataset = config["datasets"][experiment["dataset"]]
        largest = max(grid["n_requests"])
        if largest > dataset["forget_requests"]:
            raise ConfigError(
                f"grid.n_requests: N = {largest} needs {largest} requests but dataset "
                f"{experiment['dataset']!r} holds datasets.{experiment['dataset']}.forget_requests = "
                f"{dataset['forget_requests']}")
    for key, names in (("grid.methods", grid["methods"]), ("methods", config["methods"])):
        for name in names:
            if name not in METHODS:
                raise ConfigError(f"{key}: unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    labels = {}
    for lr in grid["learning_rates"]:
        if labels.setdefault(lr_label(lr), lr) != lr:
            raise ConfigError(f"grid.learning_rates: {lr} and {labels[lr_label(lr)]} share the path label "
                              f"lr{lr_label(lr)}; use values that differ in the first six digits")
