from ..utils.errors import UnacceptedArgumentError
from .dot_product_similarity import DotProductSimilarity


class CosineSimilarity(DotProductSimilarity):
    """The dot product of L2-normalized embeddings."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not (self.is_inverted and self.normalize_embeddings):
            raise UnacceptedArgumentError(
                "CosineSimilarity needs normalize_embeddings=True; "
                "use DotProductSimilarity for unnormalized embeddings."
            )
