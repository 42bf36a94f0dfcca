import torch

from ..utils import loss_and_miner_utils as lmu
from .base_miner import BaseMiner

STRATEGIES = ("hard", "semihard", "easy", "all")


class BatchEasyHardMiner(BaseMiner):
    """One positive and one negative per anchor, chosen by strategy (Xuan et al., "Improved
    Embeddings with Easy Positive Triplet Mining", WACV 2020).

    "easy": the closest positive / the farthest negative; "hard": the farthest positive / the
    closest negative; "semihard": the farthest positive closer than the chosen negative, or the
    closest negative farther than the chosen positive; "all": every pair of that kind.
    `allowed_pos_range` / `allowed_neg_range` = (low, high) keep only pairs whose distance
    (or similarity) lies in [low, high] before choosing (not applied to "all"). Unless a
    strategy is "all", only anchors with both a positive and a negative are returned.
    Returns pairs (a1, p, a2, n).
    """

    HARD, SEMIHARD, EASY, ALL = STRATEGIES
    all_batch_mining_strategies = list(STRATEGIES)

    def __init__(
        self,
        pos_strategy="easy",
        neg_strategy="semihard",
        allowed_pos_range=None,
        allowed_neg_range=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_strategies(pos_strategy, neg_strategy)
        self.pos_strategy = pos_strategy
        self.neg_strategy = neg_strategy
        self.allowed_pos_range = allowed_pos_range
        self.allowed_neg_range = allowed_neg_range
        self.add_to_recordable_attributes(
            list_of_names=[
                "easiest_triplet",
                "hardest_triplet",
                "easiest_pos_pair",
                "hardest_pos_pair",
                "easiest_neg_pair",
                "hardest_neg_pair",
            ],
            is_stat=True,
        )

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        mat = self.distance(embeddings, ref_emb)
        pos_mask, neg_mask = lmu.get_matches_and_diffs(
            labels, self.ref_labels_or_none(embeddings, ref_emb, ref_labels)
        )
        if "all" in (self.pos_strategy, self.neg_strategy):
            return self.mine_with_all(mat, pos_mask, neg_mask)
        pos_mask = in_range(mat, pos_mask, self.allowed_pos_range)
        neg_mask = in_range(mat, neg_mask, self.allowed_neg_range)
        if self.pos_strategy == "semihard":
            neg_dist, n = self.choose(mat, neg_mask, closest=self.neg_strategy == "hard")
            closer_than_neg = self.distance.margin(neg_dist.unsqueeze(1), mat) > 0
            pos_dist, p = self.choose(mat, pos_mask & closer_than_neg, closest=False)
        else:
            pos_dist, p = self.choose(mat, pos_mask, closest=self.pos_strategy == "easy")
            if self.neg_strategy == "semihard":
                farther_than_pos = self.distance.margin(mat, pos_dist.unsqueeze(1)) > 0
                neg_mask = neg_mask & farther_than_pos
            neg_dist, n = self.choose(mat, neg_mask, closest=self.neg_strategy != "easy")
        anchors = torch.where((p >= 0) & (n >= 0))[0]
        if self.collect_stats:
            self.set_pair_stats(pos_dist[anchors], neg_dist[anchors])
            self.set_triplet_stats(pos_dist[anchors], neg_dist[anchors])
        return anchors, p[anchors], anchors, n[anchors]

    def mine_with_all(self, mat, pos_mask, neg_mask):
        """At least one strategy is "all": its pairs are kept whole and the other side is
        chosen per anchor, with no requirement that an anchor has both kinds."""
        pos_mask, neg_mask = self.chosen_pairs_mask(mat, pos_mask, neg_mask)
        a1, p = torch.where(pos_mask)
        a2, n = torch.where(neg_mask)
        if self.collect_stats:
            self.set_pair_stats(mat[a1, p], mat[a2, n])
        return a1, p, a2, n

    def chosen_pairs_mask(self, mat, pos_mask, neg_mask):
        if self.pos_strategy != "all":
            pos_mask = in_range(mat, pos_mask, self.allowed_pos_range)
            _, p = self.choose(mat, pos_mask, closest=self.pos_strategy == "easy")
            pos_mask = one_hot_rows(p, mat.shape[1])
        if self.neg_strategy != "all":
            neg_mask = in_range(mat, neg_mask, self.allowed_neg_range)
            _, n = self.choose(mat, neg_mask, closest=self.neg_strategy == "hard")
            neg_mask = one_hot_rows(n, mat.shape[1])
        return pos_mask, neg_mask

    def choose(self, mat, mask, closest):
        """Per row, the value and column of the closest (or farthest) entry allowed by mask;
        column -1 where the row allows none. Ties go to the first column."""
        use_max = closest == self.distance.is_inverted
        fill = float("-inf") if use_max else float("inf")
        masked = mat.masked_fill(~mask, fill)
        values, columns = masked.max(dim=1) if use_max else masked.min(dim=1)
        # A row allowing nothing keeps the fill value (cheaper than mask.any).
        return values, torch.where(values == fill, -1, columns)

    def set_pair_stats(self, pos_dist, neg_dist):
        closest, farthest = self.closest_and_farthest(pos_dist)
        if closest is not None:
            self.easiest_pos_pair, self.hardest_pos_pair = closest, farthest
        closest, farthest = self.closest_and_farthest(neg_dist)
        if closest is not None:
            self.easiest_neg_pair, self.hardest_neg_pair = farthest, closest

    def set_triplet_stats(self, pos_dist, neg_dist):
        # pos - neg in the distance's own units, ranked like a distance: for similarities the
        # easiest triplet has the largest value.
        closest, farthest = self.closest_and_farthest(pos_dist - neg_dist)
        if closest is not None:
            self.easiest_triplet, self.hardest_triplet = closest, farthest

    def closest_and_farthest(self, dist):
        if len(dist) == 0:
            return None, None
        closest = self.distance.smallest_dist(dist).item()
        farthest = self.distance.largest_dist(dist).item()
        return closest, farthest


def check_strategies(pos_strategy, neg_strategy):
    for name, strategy in (("pos_strategy", pos_strategy), ("neg_strategy", neg_strategy)):
        if strategy not in STRATEGIES:
            raise ValueError(f"{name} must be one of {STRATEGIES}, got {strategy!r}")
    if pos_strategy == neg_strategy == "semihard":
        raise ValueError(
            'pos_strategy and neg_strategy cannot both be "semihard": each one is defined '
            "relative to the pair the other strategy chose."
        )
    if {pos_strategy, neg_strategy} == {"semihard", "all"}:
        raise ValueError(
            '"semihard" cannot be combined with "all": semihard needs one chosen pair of the '
            "other kind per anchor."
        )


def in_range(mat, mask, allowed_range):
    """The entries of mask whose value lies within [low, high] (all of them when
    allowed_range is None)."""
    if allowed_range is None:
        return mask
    low, high = allowed_range
    return mask & (mat >= low) & (mat <= high)


def one_hot_rows(columns, num_columns):
    """Boolean rows with True at each row's column; rows with column -1 stay empty."""
    mask = torch.zeros(len(columns), num_columns + 1, dtype=torch.bool, device=columns.device)
    mask[torch.arange(len(columns), device=columns.device), columns] = True
    return mask[:, :num_columns]
