"""DeepAdversarialMetricLearning (Duan et al., "Deep Adversarial Metric Learning", CVPR 2018).

A generator turns real triplets (a, p, n) of trunk outputs into a synthetic hard negative ñ.
It is trained with J_gen = J_hard + J_reg + J_adv: ñ close to the anchor (hard), close to the
real negative (reg: it stays a negative), and violating the metric's triplet constraint (adv).
The metric is trained with its usual loss plus `synth_loss` on the synthetic triplets (a, p, ñ).

Phases: the first `metric_alone_epochs` train the metric only, the next `g_alone_epochs` the
generator only; then both, with all losses, in one backward pass.
"""

import copy

import torch

from ..distances import LpDistance
from ..distances.base_distance import BaseDistance
from ..losses import TripletMarginLoss
from ..miners import EmbeddingsAlreadyPackagedAsTriplets
from ..utils import loss_and_miner_utils as lmu
from ..utils.errors import InvalidArgumentError
from ..utils.key_checker import KeyChecker
from .train_with_classifier import TrainWithClassifier

METRIC_LOSSES = ("metric_loss", "classifier_loss")
GENERATOR_LOSSES = ("g_adv_loss", "g_hard_loss", "g_reg_loss")
ADVERSARIAL_LOSSES = ("synth_loss", *GENERATOR_LOSSES)


class NegatedDistance(BaseDistance):
    """-d for a wrapped distance d (same direction flag): a triplet loss with this distance and
    margin -m is [d(a, n) - d(a, p) - m]_+, the generator's adversarial objective. Built by
    `negated(distance)` as `Negative<DistanceClass>`, the name PML's records use."""

    def __init__(self, distance):
        super().__init__(
            normalize_embeddings=distance.normalize_embeddings,
            p=distance.p,
            power=distance.power,
            is_inverted=distance.is_inverted,
        )
        # A plain attribute, not a child module: the records keep PML's layout, one
        # `..._Negative<Distance>` group (p, power) and no group for the wrapped distance.
        object.__setattr__(self, "distance", distance)

    def forward(self, query_emb, ref_emb=None):
        return -self.distance(query_emb, ref_emb)

    def compute_mat(self, query_emb, ref_emb):
        return -self.distance.compute_mat(query_emb, ref_emb)

    def pairwise_distance(self, query_emb, ref_emb):
        return -self.distance.pairwise_distance(query_emb, ref_emb)


NEGATED_CLASSES = {}


def negated(distance):
    """`distance` negated, as an instance of `Negative<its class name>`."""
    name = f"Negative{type(distance).__name__}"
    if name not in NEGATED_CLASSES:
        NEGATED_CLASSES[name] = type(name, (NegatedDistance,), {"__module__": __name__})
    return NEGATED_CLASSES[name](distance)


# PML's module exposes the class its default (LpDistance) g_adv_loss ends up with.
NegativeLpDistance = type(negated(LpDistance()))


def triplet_members(embeddings, a, p, n):
    """(embeddings[a], embeddings[p], embeddings[n]) by one index_select, whose backward
    (index_add) sums each row's repeated gradients in index order: the backward of advanced
    indexing (index_put with accumulate) sums them in a thread-dependent order on CPU, so
    runs from one seed drifted apart with 2 threads; it is also slower."""
    rows = embeddings.index_select(0, torch.cat([a, p, n]))
    return rows.split(len(a))


class DeepAdversarialMetricLearning(TrainWithClassifier):
    """models: {"trunk", "generator", optional "embedder", "classifier"} (generator: 3 x trunk
    output size in, trunk output size out); loss_funcs: {"metric_loss", "g_adv_loss" (a
    TripletMarginLoss), "synth_loss", optional "classifier_loss"}; loss_weights may also weigh
    "g_hard_loss" and "g_reg_loss"."""

    def __init__(
        self, metric_alone_epochs=0, g_alone_epochs=0, g_triplets_per_anchor=100, *args, **kwargs
    ):
        self.metric_alone_epochs = metric_alone_epochs
        self.g_alone_epochs = g_alone_epochs
        self.g_triplets_per_anchor = g_triplets_per_anchor
        super().__init__(*args, **kwargs)
        self.make_adversarial(self.loss_funcs["g_adv_loss"])
        self.original_loss_weights = copy.deepcopy(self.loss_weights)

    def make_adversarial(self, loss):
        if not isinstance(loss, TripletMarginLoss):
            raise InvalidArgumentError(
                f"g_adv_loss must be a TripletMarginLoss (its margin and distance are negated to "
                f"make the generator's objective), got {type(loss).__name__}."
            )
        loss.margin = -loss.margin
        loss.distance = negated(loss.distance)

    def custom_setup(self):
        self.mining_funcs["synth_packaged_as_triplets"] = EmbeddingsAlreadyPackagedAsTriplets()

    def tracked_loss_names(self):
        return [*self.loss_funcs, "g_hard_loss", "g_reg_loss"]

    # ----------------------------------------------------------------------------- phases
    def phase(self):
        if self.epoch <= self.metric_alone_epochs:
            return "metric"
        if self.epoch <= self.metric_alone_epochs + self.g_alone_epochs:
            return "generator"
        return "both"

    def update_loss_weights(self):
        phase = self.phase()
        # PML's phase flags, which hooks may read
        self.do_metric_alone, self.do_adv_alone = phase == "metric", phase == "generator"
        self.do_both = phase == "both"
        self.do_metric, self.do_adv = phase != "generator", phase != "metric"
        active = {
            "metric": METRIC_LOSSES,
            "generator": GENERATOR_LOSSES,
            "both": (*METRIC_LOSSES, *ADVERSARIAL_LOSSES),
        }[phase]
        self.loss_weights = {
            name: weight if name in active else 0
            for name, weight in self.original_loss_weights.items()
        }
        self.maybe_exclude_networks_from_gradient()

    def maybe_exclude_networks_from_gradient(self):
        phase = self.phase()
        for name, trains in (("trunk", phase != "generator"), ("generator", phase != "metric")):
            self.models[name].requires_grad_(trains and name not in self.freeze_these)

    def step_optimizers(self):
        phase = self.phase()
        for name, optimizer in self.optimizers.items():
            is_generator = name == "generator_optimizer"
            if phase == "both" or is_generator == (phase == "generator"):
                self.step_optimizer(optimizer)
        self.grad_scaler.update()

    # ----------------------------------------------------------------------------- losses
    def weight_of(self, name):
        return self.loss_weights.get(name, 0)

    def calculate_loss(self, curr_batch):
        data, labels = curr_batch
        penultimate_embeddings = self.get_trunk_output(data)
        embeddings, indices_tuple = None, None
        if any(self.weight_of(name) > 0 for name in METRIC_LOSSES):
            embeddings = self.get_final_embeddings(penultimate_embeddings)
            indices_tuple = self.maybe_mine_embeddings(embeddings, labels)
        self.losses["metric_loss"] = self.maybe_get_metric_loss(embeddings, labels, indices_tuple)
        logits = self.maybe_get_logits(embeddings)
        self.losses["classifier_loss"] = self.maybe_get_classifier_loss(logits, labels)
        if any(self.weight_of(name) > 0 for name in ADVERSARIAL_LOSSES):
            self.calculate_synth_loss(penultimate_embeddings, labels)

    def calculate_synth_loss(self, penultimate_embeddings, labels):
        """Synthetic triplets (a, p, ñ) laid out as consecutive rows, one per real triplet."""
        a, p, n = lmu.get_random_triplet_indices(labels, t_per_anchor=self.g_triplets_per_anchor)
        if len(a) == 0:  # no anchor with a positive in this batch: nothing to synthesize
            return
        anchors, positives, negatives = triplet_members(penultimate_embeddings, a, p, n)
        synthetic = self.models["generator"](torch.cat([anchors, positives, negatives], dim=1))
        triplet_rows = torch.stack([anchors, positives, synthetic], dim=1).flatten(0, 1)
        final_embeddings = self.get_final_embeddings(triplet_rows)
        synth_labels = torch.stack([labels[a], labels[p], labels[n]], dim=1).flatten()
        indices_tuple = self.mining_funcs["synth_packaged_as_triplets"](
            final_embeddings, synth_labels
        )
        for name in ("synth_loss", "g_adv_loss"):
            if self.weight_of(name) > 0:
                self.losses[name] = self.loss_funcs[name](
                    final_embeddings, synth_labels, indices_tuple
                )
        synthetic = torch.nn.functional.normalize(synthetic)
        for name, real in (("g_hard_loss", anchors), ("g_reg_loss", negatives)):
            if self.weight_of(name) > 0:
                self.losses[name] = torch.nn.functional.mse_loss(
                    synthetic, torch.nn.functional.normalize(real)
                )

    def modify_schema(self):
        children = self.schema.children
        children["models"] = KeyChecker(
            ["trunk", "embedder", "classifier", "generator"], essential=["trunk", "generator"]
        )
        children["loss_funcs"] = KeyChecker(
            ["metric_loss", "classifier_loss", "synth_loss", "g_adv_loss"],
            essential=["synth_loss", "g_adv_loss"],
        )
        children["mining_funcs"] = KeyChecker(
            ["subset_batch_miner", "tuple_miner", "synth_packaged_as_triplets"],
            warn_empty=False,
            important=[],
        )
        weighted = ["metric_loss", "classifier_loss", "synth_loss", "g_adv_loss"]
        children["loss_weights"] = KeyChecker(
            [*weighted, "g_hard_loss", "g_reg_loss"],
            warn_empty=False,
            important=[],
            essential=["metric_loss", "synth_loss", "g_adv_loss", "g_hard_loss", "g_reg_loss"],
        )
