import torch

from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from ..utils.module_with_records import ModuleWithRecordsAndDistance


class BaseMiner(ModuleWithRecordsAndDistance):
    """miner(embeddings, labels, ref_emb=None, ref_labels=None) -> index tuple, under no_grad.

    Returns a pair 4-tuple (a1, p, a2, n) or a triplet 3-tuple (a, p, n) of long tensors
    indexing embeddings (anchors) and ref_emb (positives, negatives).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_to_recordable_attributes(
            list_of_names=["num_pos_pairs", "num_neg_pairs", "num_triplets"], is_stat=True
        )

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        raise NotImplementedError(f"{type(self).__name__} must define mine")

    def forward(self, embeddings, labels, ref_emb=None, ref_labels=None):
        self.reset_stats()
        with torch.no_grad():
            c_f.check_shapes(embeddings, labels)
            if labels is None:
                raise ValueError(f"{type(self).__name__} needs labels to mine tuples.")
            labels = c_f.to_device(labels, embeddings)
            ref_emb, ref_labels = c_f.set_ref_emb(embeddings, labels, ref_emb, ref_labels)
            mining_output = self.mine(embeddings, labels, ref_emb, ref_labels)
        self.output_assertion(mining_output)
        return mining_output

    def output_assertion(self, mining_output):
        """Checks the tuple's length and records its size (PML's name)."""
        lengths = lmu.check_tuple_lengths(mining_output, f"{type(self).__name__}.mine's output")
        # Set whatever collect_stats is, as PML does: its examples print miner.num_triplets.
        if len(mining_output) == 4:
            self.num_pos_pairs, _, self.num_neg_pairs, _ = lengths
        else:
            self.num_triplets = lengths[0]

    @staticmethod
    def ref_labels_or_none(embeddings, ref_emb, ref_labels):
        """The ref labels to pass to pair/triplet helpers: None when ref is the query set,
        which removes self-comparisons."""
        return None if ref_emb is embeddings else ref_labels
