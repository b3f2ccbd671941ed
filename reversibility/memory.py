"""How much accelerator memory one training job ("cell") needs: a formula, not a measurement.

The estimate is for a Llama/Qwen2-style decoder trained with the workflow's precision policy:
float32 trainable weights, gradients and AdamW state; forward and backward under
`torch.autocast(dtype=compute dtype)` (none in float32); the frozen base of a LoRA model held in
the compute dtype; a frozen reference model (NPO, GA+KL, NPO+KL) in the compute dtype; AdamW
fused into one kernel on a GPU, as reversibility/training.py makes it (`fused_optimizer=False`:
PyTorch's default foreach AdamW); attention through SDPA's flash or memory-efficient kernels,
which keep the output and a logsumexp, no T x T scores.

It counts the bytes of live tensors, what `torch.cuda.max_memory_allocated` reports; `nvidia-smi`
shows more (the CUDA context, cuBLAS workspaces, the caching allocator's reserve and
fragmentation), which this does not model. A padding mask adds B x T x T bytes, once.
tests/test_memory.py checks the formula against the peak PyTorch's allocator measures for real
training steps of small models on a CPU, which keeps the same tensors as a GPU (same autograd
graph, same autocast rules); a GPU measurement has not been made.

Importing this module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

FLOAT32 = 4
ADAMW_STATES = 2  # exp_avg and exp_avg_sq
LORA_TARGETS = 7  # q, k, v, o, gate, up, down projections of every decoder layer
LOGITS_TENSORS = 3  # float32 [B, T, V] tensors alive at once around the loss
KL_REFERENCE_TENSORS = 2  # the reference's float32 log-probabilities and their exp (KL terms)


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a Llama/Qwen2-style decoder that memory depends on."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied_embeddings: bool = False
    head_dim: int | None = None  # hidden // heads unless the config says otherwise
    attention_bias: bool = False  # q, k, v biases (Qwen2 has them)

    @classmethod
    def from_config(cls, config: Any) -> "ModelShape":
        """The shape of a transformers LlamaConfig, Qwen2Config or alike."""
        bias = getattr(config, "attention_bias", None)
        return cls(
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            layers=config.num_hidden_layers,
            heads=config.num_attention_heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
            vocab=config.vocab_size,
            tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
            head_dim=getattr(config, "head_dim", None),
            attention_bias=bool(bias) if bias is not None else config.model_type == "qwen2",
        )

    @property
    def query_width(self) -> int:
        return self.heads * (self.head_dim or self.hidden // self.heads)

    @property
    def kv_width(self) -> int:
        return self.kv_heads * (self.head_dim or self.hidden // self.heads)

    @property
    def layer_linear_parameters(self) -> int:
        """Matrix weights (and q, k, v biases) of one decoder layer."""
        h, q, kv, i = self.hidden, self.query_width, self.kv_width, self.intermediate
        attention = h * q + 2 * h * kv + q * h
        bias = (q + 2 * kv) if self.attention_bias else 0
        return attention + bias + 3 * h * i

    @property
    def linear_parameters(self) -> int:
        """Weights that go through a matmul, and so through autocast's cast: all decoder layers'
        projections and the output head (the embedding matrix itself when it is tied)."""
        return self.layers * self.layer_linear_parameters + self.vocab * self.hidden

    @property
    def parameters(self) -> int:
        """layers x (projections + 2 norms) + final norm + embedding (+ untied output head)."""
        h = self.hidden
        embeddings = self.vocab * h * (1 if self.tied_embeddings else 2)
        return self.layers * (self.layer_linear_parameters + 2 * h) + h + embeddings

    @property
    def layer_parameters(self) -> int:
        """One decoder layer's weights: its projections and two norms."""
        return self.layer_linear_parameters + 2 * self.hidden

    @property
    def outer_parameters(self) -> int:
        """The weights outside the decoder layers: embeddings, final norm, output head."""
        return self.parameters - self.layers * self.layer_parameters

    def lora_parameters(self, rank: int) -> int:
        """A LoRA adapter of `rank` on q, k, v, o, gate, up, down: rank x (in + out) each."""
        h, q, kv, i = self.hidden, self.query_width, self.kv_width, self.intermediate
        per_layer = (h + q) + 2 * (h + kv) + (q + h) + 2 * (h + i) + (i + h)
        return self.layers * rank * per_layer


def layer_activation_bytes(shape: ModelShape, compute_bytes: int, lora_rank: int | None) -> int:
    """Bytes one decoder layer keeps for the backward pass, per token (c: compute bytes).

    norms       4 h per RMSNorm for its float32 input, and 4 h more for its normalised values
                when the norm weights train (full fine-tuning)
    q,k,v in    c h: the attention norm's output; under autocast each projection casts it and
                keeps its own copy: 3 c h
    gate,up in  c h, or 2 c h under autocast, likewise
    o in        0: the attention output itself; under autocast with LoRA, c q_width (peft casts
                an adapter's input to float32, autocast back: a copy of its own)
    down in     c i: the MLP product
    attention   c (2 q_width + 2 kv_width): q, k after rotary embedding, v, and the output; plus
                4 bytes of logsumexp per head (flash/efficient SDPA keeps no T x T scores)
    MLP         3 c i: gate output, its SiLU and the up output
    LoRA        c rank per adapted projection (the adapter's A output)
    """
    h, i, c = shape.hidden, shape.intermediate, compute_bytes
    full = lora_rank is None
    own_copies = compute_bytes < FLOAT32  # autocast: a cast copy per projection
    norms = 2 * FLOAT32 * h * (2 if full else 1)
    qkv_input = c * h * (3 if own_copies else 1)
    gate_up_input = c * h * (2 if own_copies else 1)
    o_input = c * shape.query_width if own_copies and not full else 0
    down_input = c * i
    attention = c * (2 * shape.query_width + 2 * shape.kv_width) + FLOAT32 * shape.heads
    mlp = c * 3 * i
    adapter = 0 if full else c * LORA_TARGETS * lora_rank
    return norms + qkv_input + gate_up_input + o_input + down_input + attention + mlp + adapter


def activation_bytes(
    shape: ModelShape, *, tokens: int, compute_bytes: int, lora_rank: int | None, gradient_checkpointing: bool
) -> int:
    """Bytes one forward pass keeps for the backward pass: the decoder stack plus the final norm
    and the head's input.

    Without checkpointing every layer's activations are kept: tokens x L x layer. With it only
    each layer's input (the residual stream: float32 when the weights are, else compute dtype)
    is kept: tokens x L x s x h; the one layer recomputed at a time is recomputed_layer_bytes().
    """
    full = lora_rank is None
    if gradient_checkpointing:
        residual_bytes = FLOAT32 if full else compute_bytes
        stack = shape.layers * residual_bytes * shape.hidden
    else:
        stack = shape.layers * layer_activation_bytes(shape, compute_bytes, lora_rank)
    # The final norm as in a layer; the head's input is kept only when the head trains.
    head = FLOAT32 * shape.hidden * (2 if full else 1) + (compute_bytes * shape.hidden if full else 0)
    return tokens * (stack + head)


def recomputed_layer_bytes(
    shape: ModelShape, *, tokens: int, compute_bytes: int, lora_rank: int | None, gradient_checkpointing: bool
) -> int:
    """With gradient checkpointing, the bytes one layer's recomputation holds at its end, where
    a checkpointed model's backward pass peaks:

        tokens x (layer                     its activations, as layer_activation_bytes()
                  + 2 s h                   the gradient arriving from the layer above
                  + (c + 4) i)              LoRA under autocast only: the down projection's
                                            input (not kept otherwise) and peft's float32 copy
      + c x the layer's matmul weights      autocast's copies of them (full fine-tuning)
    """
    if not gradient_checkpointing:
        return 0
    full, autocast = lora_rank is None, compute_bytes < FLOAT32
    residual_bytes = FLOAT32 if full else compute_bytes
    arriving_gradient = 2 * residual_bytes * shape.hidden
    peft_down_input = (compute_bytes + FLOAT32) * shape.intermediate if not full and autocast else 0
    weight_copies = compute_bytes * shape.layer_linear_parameters if full and autocast else 0
    per_token = layer_activation_bytes(shape, compute_bytes, lora_rank) + arriving_gradient + peft_down_input
    return tokens * per_token + weight_copies


def training_memory(
    shape: ModelShape,
    *,
    batch: int,
    seq: int,
    compute_bytes: int,
    lora_rank: int | None = None,
    reference: bool = False,
    gradient_checkpointing: bool = False,
    forward_passes: int = 1,
    fused_optimizer: bool = True,
    processes: int = 1,
) -> dict[str, int]:
    """Peak bytes of a training step (any after the first, once AdamW's state exists), per
    component, and their `total`. With P model parameters, P_lin of them matmul weights, P_t
    trainable ones (P for full fine-tuning, the adapter's for LoRA), c compute bytes (2 for
    bfloat16 or float16 autocast, 4 for float32) and N = B x T tokens:

        weights           4 P (full)  or  c P + 4 P_t (LoRA: frozen base in compute dtype)
        gradients         4 P_t
        optimiser         8 P_t              AdamW exp_avg, exp_avg_sq
        optimiser_step    4 P_t              foreach AdamW's sqrt(exp_avg_sq) buffer in step();
                                             0 for the fused AdamW the workflow uses on a GPU
        weight_cast_cache c P_lin (full), c P_t (LoRA)   autocast's low-precision weight copies;
                          0 in float32
        reference         c P (full); 0 with LoRA (the adapter switched off)
        activations       forward_passes x activation_bytes(...) + recomputed_layer_bytes(...)
        logits            4 N V x (3 + 1 per extra forward pass + 2 with a reference): three
                          float32 [B, T, V] tensors around the loss (float32 logits, log-softmax
                          and its gradient); an earlier forward pass keeps its log-softmax; a KL
                          term keeps the reference's log-probabilities and their exp

        total = weights + optimiser + reference
                + max(weight_cast_cache + activations + logits,     start of backward
                      gradients + optimiser_step)                   optimiser step

    Activations and weight copies are freed as the backward pass produces the gradients, so the
    two are not added. With gradient checkpointing, activations are the kept layer inputs plus
    recomputed_layer_bytes(); the recomputation happens after the loss's tensors and autocast's
    cache are gone, so the start of backward is
        kept inputs + max(weight_cast_cache + logits, recomputed layer).

    `forward_passes` is 2 for methods whose loss runs the model on a forget and a retain batch
    before one backward (GA+GD, GA+KL, NPO+GD, NPO+KL, SimNPO). The reference logits are those of a KL
    term; NPO keeps only per-sequence sums, so for NPO they are an upper bound.

    Sharded over G `processes` (sharding.py, full fine-tuning only), per process: weights,
    gradients, optimiser and reference are 1/G of the above; activations and logits are those of
    ceil(B / G) sequences; autocast's weight copies are not sharded (each process keeps the copies
    of every layer it ran until the backward pass); and FSDP adds

        gathered          4 (P_outer + 3 P_layer) + c (P_outer + 2 P_layer) with a reference:
                          the whole float32 weights outside the layers (embeddings, output head)
                          and of two layers (the one computing and the one prefetched), one
                          layer's whole gradients before they are reduce-scattered, and the
                          reference's gathered weights

    alive with the activations, not at the optimiser step. This part is the formula's own: unlike
    the rest it has not been checked against an allocator's peak.
    """
    if processes > 1 and lora_rank is not None:
        raise ValueError("sharding is for full fine-tuning; a LoRA job runs in one process")
    per_process = -(-batch // processes)
    sizes = dict(
        tokens=per_process * seq,
        compute_bytes=compute_bytes,
        lora_rank=lora_rank,
        gradient_checkpointing=gradient_checkpointing,
    )
    total_params = shape.parameters
    trainable = total_params if lora_rank is None else shape.lora_parameters(lora_rank)
    frozen = 0 if lora_rank is None else total_params
    autocast = compute_bytes < FLOAT32
    cast_params = (shape.linear_parameters if lora_rank is None else trainable) if autocast else 0
    recomputed = recomputed_layer_bytes(shape, **sizes)

    def shard(n_bytes: int) -> int:
        return -(-n_bytes // processes)

    gathered = 0
    if processes > 1:
        gathered = FLOAT32 * (shape.outer_parameters + 3 * shape.layer_parameters)
        gathered += compute_bytes * (shape.outer_parameters + 2 * shape.layer_parameters) if reference else 0
    parts = {
        "weights": shard(FLOAT32 * trainable) + compute_bytes * frozen,
        "gradients": shard(FLOAT32 * trainable),
        "optimiser": shard(ADAMW_STATES * FLOAT32 * trainable),
        "optimiser_step": 0 if fused_optimizer else shard(FLOAT32 * trainable),
        "weight_cast_cache": compute_bytes * cast_params,
        "reference": shard(compute_bytes * total_params) if reference and lora_rank is None else 0,
        "activations": forward_passes * activation_bytes(shape, **sizes) + recomputed,
        "logits": FLOAT32
        * per_process
        * seq
        * shape.vocab
        * (LOGITS_TENSORS + (forward_passes - 1) + (KL_REFERENCE_TENSORS if reference else 0)),
        "gathered": gathered,
    }
    kept = parts["activations"] - recomputed
    # Without checkpointing `recomputed` is 0 and this is the plain sum.
    backward_start = kept + max(parts["weight_cast_cache"] + parts["logits"], recomputed) + gathered
    optimiser_step = parts["gradients"] + parts["optimiser_step"]
    static = parts["weights"] + parts["optimiser"] + parts["reference"]
    parts["total"] = static + max(backward_start, optimiser_step)
    return parts


def gib(n_bytes: int) -> float:
    return n_bytes / 2**30


def format_gib(n_bytes: int) -> str:
    return f"{gib(n_bytes):.1f} GiB"


def memory_table(rows: Iterable[tuple[str, Mapping[str, int]]]) -> str:
    """A Markdown table, one row per (label, training_memory(...) result), in GiB."""
    rows = list(rows)
    columns = list(rows[0][1])
    lines = ["| job | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for label, parts in rows:
        lines.append(f"| {label} | " + " | ".join(f"{gib(parts[c]):.1f}" for c in columns) + " |")
    return "\n".join(lines)


PUBLISHED_SHAPES = {
    "Qwen2.5-7B": ModelShape(
        hidden=3584, intermediate=18944, layers=28, heads=28, kv_heads=4, vocab=152064, attention_bias=True
    ),
    "Yi-6B": ModelShape(hidden=4096, intermediate=11008, layers=32, heads=32, kv_heads=4, vocab=64000),
}

TABLE_JOBS = [
    ("full", {}),
    ("full + reference", dict(reference=True)),
    ("full, checkpointing", dict(gradient_checkpointing=True)),
    ("full + reference, checkpointing", dict(reference=True, gradient_checkpointing=True)),
    ("full + reference, checkpointing, sharded over 4", dict(reference=True, gradient_checkpointing=True, processes=4)),
    ("LoRA r8", dict(lora_rank=8)),
    ("LoRA r8, checkpointing", dict(lora_rank=8, gradient_checkpointing=True)),
]


def published_table(batch: int = 8, seq: int = 512, compute_bytes: int = 2) -> str:
    """The table of docs/models.md: the published shapes under each job, bfloat16 autocast by default."""
    return memory_table(
        (f"{name} {job}", training_memory(shape, batch=batch, seq=seq, compute_bytes=compute_bytes, **options))
        for name, shape in PUBLISHED_SHAPES.items()
        for job, options in TABLE_JOBS
    )


if __name__ == "__main__":
    print(published_table())
