import math

import torch

from ..distances import CosineSimilarity
from ..utils import common_functions as c_f
from ..utils.errors import InvalidArgumentError
from .base_metric_loss_function import BaseMetricLossFunction


class ManifoldLoss(BaseMetricLossFunction):
    """Manifold loss (Aziere & Todorovic, "Ensemble Deep Manifold Similarity Learning using Hard
    Proxies", CVPR 2019).

    On the graph of the N embeddings and K learnable proxies, S_ij = exp(max(s_ij, 0) / 0.5)
    (i ≠ j), S̄ = D^−½ S D^−½ and the random-walk affinities F = (1 − α)(I − α S̄)⁻¹. With c(i)
    the proxy of embedding i, L_int = mean_i log(1 + Σ_{k≠c(i)} e^{[F_ik − F_ic(i) + m]_+}) and
    L_ctx is the same on cos(F_i, F_k); only violating terms ([·]_+ > 0) enter the sums.
    loss = L_int + λ_C L_ctx (λ_C = inf: L_ctx alone).

    `indices_tuple` is not a miner's output here: it is each embedding's proxy index. Without it
    every proxy gets one random embedding and the others random proxies.
    """

    def __init__(
        self,
        l: int,  # noqa: E741 (PML's name for the embedding size)
        K: int = 50,
        lambdaC: float = 1.0,
        alpha: float = 0.8,
        margin: float = 5e-4,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not self.distance.is_inverted:
            raise InvalidArgumentError(
                f"ManifoldLoss builds its graph from similarities (e.g. CosineSimilarity()), "
                f"got the distance {type(self.distance).__name__}."
            )
        for name, value in (("l", l), ("K", K)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(
                    f"ManifoldLoss needs {name} as a positive int, got {value!r}."
                )
        if not 0 < alpha < 1:
            raise InvalidArgumentError(
                f"ManifoldLoss needs the random-walk alpha in (0, 1), got {alpha}."
            )
        if lambdaC < 0:
            raise InvalidArgumentError(
                f"ManifoldLoss needs lambdaC >= 0 (inf for the context loss alone), got {lambdaC}."
            )
        self.l = l
        self.K = K
        self.lambdaC = lambdaC
        self.alpha = alpha
        self.margin = margin
        self.proxies = torch.nn.Parameter(torch.randn(K, l))
        self.add_to_recordable_attributes(
            list_of_names=["K", "l", "lambdaC", "alpha", "margin"], is_stat=False
        )

    def check_labels_available(self, labels, indices_tuple):
        if labels is not None:
            raise InvalidArgumentError(
                "ManifoldLoss does not take labels: pass each embedding's proxy index as "
                "indices_tuple, or nothing for random proxies."
            )

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if ref_emb is not embeddings:
            raise InvalidArgumentError(
                "ManifoldLoss does not support ref_emb: the proxies are the reference set."
            )
        if embeddings.shape[1] != self.l:
            raise InvalidArgumentError(
                f"ManifoldLoss was built for l={self.l} but embeddings have size {embeddings.shape[1]}."
            )
        num_emb = len(embeddings)
        assignment = self.proxy_assignment(indices_tuple, num_emb, embeddings.device)
        # There is no half-precision matrix inverse on the CPU; the graph runs in float32 at least.
        work_dtype = torch.float32 if embeddings.dtype == torch.float16 else embeddings.dtype
        proxies = c_f.to_device(self.proxies, embeddings, dtype=work_dtype)
        affinity = self.random_walk_affinity(torch.cat([embeddings.to(work_dtype), proxies]))
        intrinsic = self.violation_loss(affinity[:num_emb, num_emb:], assignment)
        rows = torch.nn.functional.normalize(affinity, dim=1)
        context = self.violation_loss(rows[:num_emb] @ rows[num_emb:].t(), assignment)
        if math.isinf(self.lambdaC):
            loss = context
        else:
            loss = intrinsic + self.lambdaC * context
        loss = loss.to(embeddings.dtype)
        return {"loss": {"losses": loss, "indices": None, "reduction_type": "already_reduced"}}

    def proxy_assignment(self, indices_tuple, num_emb, device):
        if indices_tuple is not None:
            assignment = torch.as_tensor(indices_tuple, device=device)
            if (
                assignment.shape != (num_emb,)
                or assignment.is_floating_point()
                or bool(((assignment < 0) | (assignment >= self.K)).any())
            ):
                raise InvalidArgumentError(
                    f"ManifoldLoss takes indices_tuple as one proxy index in [0, K={self.K}) per "
                    f"embedding (shape ({num_emb},)), got {assignment.dtype} of shape "
                    f"{tuple(assignment.shape)}."
                )
            return assignment.long()
        if num_emb < self.K:
            raise InvalidArgumentError(
                f"ManifoldLoss with random proxies needs at least K={self.K} embeddings per batch, "
                f"got {num_emb}; pass indices_tuple or use a smaller K."
            )
        # Drawn on the CPU generator so a seed gives the same assignment on every device.
        others = torch.randint(0, self.K, (num_emb - self.K,))
        order = torch.randperm(num_emb)
        return torch.cat([torch.arange(self.K), others])[order].to(device)

    def random_walk_affinity(self, nodes):
        sims = self.distance(nodes)
        graph = torch.exp(torch.clamp(sims, min=0) / 0.5)
        graph = graph * (1 - torch.eye(len(nodes), dtype=graph.dtype, device=graph.device))
        inv_sqrt_degree = torch.rsqrt(graph.sum(dim=1))
        normalized = graph * inv_sqrt_degree.unsqueeze(1) * inv_sqrt_degree.unsqueeze(0)
        eye = torch.eye(len(nodes), dtype=graph.dtype, device=graph.device)
        return (1 - self.alpha) * torch.linalg.inv(eye - self.alpha * normalized)

    def violation_loss(self, scores, assignment):
        """mean_i log(1 + Σ_{k ≠ c(i), violating} exp([s_ik − s_ic(i) + m]_+))."""
        own = scores.gather(1, assignment.unsqueeze(1))
        violation = torch.relu(scores - own + self.margin)
        is_other = torch.ones_like(scores, dtype=torch.bool).scatter_(
            1, assignment.unsqueeze(1), False
        )
        terms = torch.exp(violation) * (is_other & (violation > 0))
        return torch.mean(torch.log1p(terms.sum(dim=1)))

    def get_default_distance(self):
        return CosineSimilarity()
