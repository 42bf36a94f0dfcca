from .batch_easy_hard_miner import BatchEasyHardMiner


class BatchHardMiner(BatchEasyHardMiner):
    """Batch-hard triplets (Hermans et al., "In Defense of the Triplet Loss", 2017): for each
    anchor, its farthest positive and its closest negative. Anchors lacking either are dropped.
    Returns triplets (a, p, n).
    """

    def __init__(self, **kwargs):
        super().__init__(pos_strategy="hard", neg_strategy="hard", **kwargs)

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        anchors, p, _, n = super().mine(embeddings, labels, ref_emb, ref_labels)
        return anchors, p, n
