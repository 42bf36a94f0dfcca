"""Softmax cross-entropy of the logits query @ ref.T, fused with the matrix product.

F.cross_entropy on a logits matrix keeps its log-softmax, zero-fills a one-hot gradient and
writes two more matrices in backward. Here the (N, C) logits are the one large buffer: it
becomes the exponentials in forward and the logits' gradient in backward, and is only read
by the two products that give the inputs' gradients. Values equal F.cross_entropy's (up to
rounding); each loss is logsumexp_j(z_ij) − z_i,target.
"""

import torch

HALF_DTYPES = (torch.float16, torch.bfloat16)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, ref, targets):
        logits = query @ ref.t()
        target_logits = logits.gather(1, targets.unsqueeze(1)).squeeze(1)
        row_max = logits.amax(dim=1, keepdim=True)
        exps = logits.sub_(row_max).exp_()
        row_sum = exps.sum(dim=1, keepdim=True)
        ctx.save_for_backward(query, ref, targets, exps, row_sum)
        return (torch.log(row_sum) + row_max).squeeze(1) - target_logits

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_losses):
        query, ref, targets, exps, row_sum = ctx.saved_tensors
        grad_rows = grad_losses.unsqueeze(1)
        # g_i (softmax_ij − [j = target_i]), in a fresh buffer: the saved exponentials stay
        # intact so that a retained graph can run backward again.
        grad_logits = exps * (grad_rows / row_sum)
        grad_logits.scatter_add_(1, targets.unsqueeze(1), -grad_rows)
        grad_query = grad_logits @ ref if ctx.needs_input_grad[0] else None
        grad_ref = grad_logits.t() @ query if ctx.needs_input_grad[1] else None
        return grad_query, grad_ref, None


def linear_cross_entropy(query, ref, targets):
    """Per-row losses −log softmax(query @ ref.T)[i, targets[i]] for query (N, d), ref (C, d)
    and int64 targets (N,). Half precision runs in float32 (exp(64) overflows float16) and
    the losses come back in the input dtype."""
    if query.dtype in HALF_DTYPES:
        return _LinearCrossEntropy.apply(query.float(), ref.float(), targets).to(query.dtype)
    return _LinearCrossEntropy.apply(query, ref, targets)
