"""Small datasets and models shared by the tester tests."""

import torch


def two_level_dataset(n=48, seed=0):
    """(x, [fine label, coarse label]) with fine labels 0..5 and coarse = fine // 2."""
    generator = torch.Generator().manual_seed(seed)
    fine = torch.arange(6).repeat(n // 6)[torch.randperm(n, generator=generator)]
    x = torch.randn(n, 6, generator=generator) + fine.unsqueeze(1).float()
    return torch.utils.data.TensorDataset(x, torch.stack([fine, fine // 2], dim=1))


def one_level_dataset(n=36, seed=0):
    x, labels = two_level_dataset(n, seed).tensors
    return torch.utils.data.TensorDataset(x, labels[:, 0])


def models():
    torch.manual_seed(0)
    return torch.nn.Linear(6, 5), torch.nn.Linear(5, 3)


def embed(x, trunk, embedder=None, normalize=True):
    with torch.no_grad():
        out = trunk(x) if embedder is None else embedder(trunk(x))
    return torch.nn.functional.normalize(out, dim=1) if normalize else out
