from types import SimpleNamespace

import torch

from metric_runner.losses import NTXentLoss, SelfSupervisedLoss
from metric_runner.runner.callbacks import SelfSupervisedTerm


def test_weighted_loss_between_the_batch_and_its_augmented_copy():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    trainer = SimpleNamespace(compute_embeddings=model, to_data_device=lambda x: x)
    loss = SelfSupervisedLoss(NTXentLoss(temperature=0.1))
    term = SelfSupervisedTerm(loss, augmentation=lambda x: x.flip(1), weight=0.5)
    data = torch.randn(6, 4)
    embeddings = model(data)
    expected = 0.5 * loss(embeddings, model(data.flip(1)))
    torch.testing.assert_close(term(trainer, data, embeddings), expected)
    # By the definition: NTXent over 2N views, each one's positive its own other view.
    views = torch.nn.functional.normalize(torch.cat([embeddings, model(data.flip(1))]), dim=1)
    logits = views @ views.T / 0.1
    logits.fill_diagonal_(-torch.inf)
    positives = torch.cat([torch.arange(6, 12), torch.arange(6)])
    by_hand = torch.nn.functional.cross_entropy(logits, positives)
    torch.testing.assert_close(term(trainer, data, embeddings), 0.5 * by_hand, rtol=1e-5, atol=1e-6)
