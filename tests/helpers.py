"""Helpers shared by tests: test dtypes/device from the environment, data, tolerances."""

import os

import torch

TEST_DTYPES = [
    getattr(torch, name.strip())
    for name in os.environ.get("TEST_DTYPES", "float32,float64").split(",")
    if name.strip()
]
TEST_DEVICE = torch.device(os.environ.get("TEST_DEVICE", "cpu"))

# Tolerances for comparing two implementations of the same formula.
TOLERANCES = {
    torch.float16: {"rtol": 1e-2, "atol": 1e-2},
    torch.float32: {"rtol": 1e-4, "atol": 1e-5},
    torch.float64: {"rtol": 1e-7, "atol": 1e-9},
}


def clustered_embeddings(
    num_classes=8, per_class=4, dim=16, spread=0.6, seed=0, dtype=torch.float32, device=TEST_DEVICE
):
    """Random embeddings around one random center per class, so mining and losses see a mix
    of easy and hard tuples. Returns (embeddings requiring grad, labels)."""
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=generator, dtype=torch.float64)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    labels = labels[torch.randperm(len(labels), generator=generator)]
    noise = spread * torch.randn(len(labels), dim, generator=generator, dtype=torch.float64)
    embeddings = (centers[labels] + noise).to(dtype=dtype, device=device).requires_grad_(True)
    return embeddings, labels.to(device)


def assert_close(actual, expected, dtype=torch.float32, scale=1.0):
    """torch.testing.assert_close with the dtype's tolerance (scaled for long reductions)."""
    tol = TOLERANCES[dtype]
    torch.testing.assert_close(
        actual.to(torch.float64),
        expected.to(torch.float64),
        rtol=tol["rtol"] * scale,
        atol=tol["atol"] * scale,
    )
