"""NEFTune (train.neftune_alpha): uniform noise added to the input embeddings while training, of magnitude
alpha / sqrt(L * d) for a row of L tokens and embedding width d (Jain et al. 2023, arXiv:2310.05914; TRL's,
LLaMA-Factory's and Axolotl's neftune_noise_alpha).

transformers' hook takes L from the batch's shape: padded rows all get the longest row's L, and the rows of a
padding-free step, joined into one sequence, get the whole step's (8 demo rows packed together got noise
sqrt(8) ~ 2.8x weaker than each alone). Here every token's L is its own row's: the rows' lengths are read from the
position ids (each packed row starts again at 0) or the attention mask (padded rows), by a pre-hook on the module
that owns the embeddings, and the noise is drawn in the embeddings' forward hook. Evaluation and generation run
in eval mode: no noise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def row_lengths(shape: tuple[int, int], position_ids: Any = None, attention_mask: Any = None) -> Any:
    """Each token's row length, shape (batch, tokens): from a padded batch's attention mask (its ones), else from
    packed rows' position ids (a row starts where the position is 0), else the sequence length.

    >>> import torch
    >>> row_lengths((1, 5), position_ids=torch.tensor([[0, 1, 2, 0, 1]])).tolist()
    [[3, 3, 3, 2, 2]]
    >>> row_lengths((2, 3), attention_mask=torch.tensor([[1, 1, 1], [0, 1, 1]])).tolist()
    [[3, 3, 3], [2, 2, 2]]
    """
    import torch

    if attention_mask is not None and attention_mask.dim() == 2 and not bool(attention_mask.all()):
        return attention_mask.sum(dim=1, keepdim=True).expand(shape)
    if position_ids is not None and position_ids.dim() == 2 and position_ids.shape == shape:
        rows = torch.cumsum(position_ids == 0, dim=1)  # the row each token belongs to, per sequence
        sizes = torch.zeros(shape[0], shape[1] + 1, dtype=torch.long, device=rows.device)
        sizes.scatter_add_(1, rows, torch.ones_like(rows))
        return torch.gather(sizes, 1, rows)
    return torch.full(shape, shape[1], dtype=torch.long)


def _owner(model: Any, embeddings: Any) -> Any:
    """The module that holds the embeddings as a direct child (LlamaModel's embed_tokens): it is called with the
    step's input ids and position ids (PEFT calls the causal LM's forward directly, past its hooks)."""
    for module in model.modules():
        if any(child is embeddings for child in module.children()):
            return module
    raise ValueError("no module holds the input embeddings")


@contextlib.contextmanager
def neftune(model: Any, alpha: float) -> Iterator[None]:
    """Noisy input embeddings while `model` trains, each token's noise scaled by its own row's length."""
    import torch

    embeddings = model.get_input_embeddings()
    seen: dict[str, Any] = {}

    def remember(_: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen["position_ids"], seen["attention_mask"] = kwargs.get("position_ids"), kwargs.get("attention_mask")

    def add_noise(module: Any, _: Any, output: Any) -> Any:
        if not module.training:
            return output
        lengths = row_lengths(tuple(output.shape[:2]), seen.get("position_ids"), seen.get("attention_mask"))
        scale = alpha / torch.sqrt(lengths.to(output.device, torch.float32) * output.shape[-1])
        noise = torch.empty_like(output).uniform_(-1, 1)
        return output + noise * scale.unsqueeze(-1).to(output.dtype)

    handles = [_owner(model, embeddings).register_forward_pre_hook(remember, with_kwargs=True),
               embeddings.register_forward_hook(add_noise)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
