import torch

from ..utils.errors import InvalidArgumentError, InvalidArgumentTypeError


class MultipleLosses(torch.nn.Module):
    """The weighted sum of several losses, each optionally fed by its own miner.

    `losses`, `miners` and `weights` are parallel lists, or dicts keyed by the same names
    (`miners` may name a subset; `weights` must name every loss). Weights default to 1.
    """

    def __init__(self, losses, miners=None, weights=None):
        super().__init__()
        self.is_dict = isinstance(losses, dict)
        if not isinstance(losses, (dict, list, tuple)) or len(losses) == 0:
            raise InvalidArgumentTypeError(
                f"losses must be a non-empty list or dict of losses, got {type(losses).__name__}."
            )
        keys = list(losses) if self.is_dict else list(range(len(losses)))
        self.check_matches_losses(miners, keys, "miners", every_key=False)
        self.check_matches_losses(weights, keys, "weights", every_key=True)
        self.losses = torch.nn.ModuleDict(losses) if self.is_dict else torch.nn.ModuleList(losses)
        self.miners = None
        if miners is not None:
            chosen = miners.items() if self.is_dict else enumerate(miners)
            self.miners = torch.nn.ModuleDict({str(k): m for k, m in chosen if m is not None})
        if weights is None:
            weights = {k: 1 for k in keys} if self.is_dict else [1] * len(keys)
        self.weights = weights

    def check_matches_losses(self, x, keys, name, every_key):
        if x is None:
            return
        if self.is_dict != isinstance(x, dict):
            raise InvalidArgumentTypeError(
                f"{name} must be a dict when losses is a dict and a list when losses is a list."
            )
        if self.is_dict:
            unknown, missing = set(x) - set(keys), set(keys) - set(x)
            if unknown or (every_key and missing):
                raise InvalidArgumentError(
                    f"{name} keys must match the loss names {keys}: unknown {sorted(unknown)}"
                    + (f", missing {sorted(missing)}" if every_key else "")
                )
        elif len(x) != len(keys):
            raise InvalidArgumentError(
                f"{name} must have one entry per loss ({len(keys)}), got {len(x)}."
            )

    def forward(self, embeddings, labels, indices_tuple=None):
        if self.miners and indices_tuple is not None:
            raise InvalidArgumentError(
                "MultipleLosses mines its own tuples: pass either miners or indices_tuple, not both."
            )
        named = self.losses.items() if self.is_dict else enumerate(self.losses)
        total = 0
        for key, loss_fn in named:
            tuples = indices_tuple
            if self.miners and str(key) in self.miners:
                tuples = self.miners[str(key)](embeddings, labels)
            total = total + loss_fn(embeddings, labels, tuples) * self.weights[key]
        return total
