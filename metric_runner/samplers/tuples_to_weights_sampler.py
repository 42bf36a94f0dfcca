import torch
from torch.utils.data import DataLoader, Sampler, Subset

from ..utils import loss_and_miner_utils as lmu
from .m_per_class_sampler import epoch_generator

SUPPORTED_TESTER_KWARGS = ("batch_size", "dataloader_num_workers", "data_device")


class TuplesToWeightsSampler(Sampler):
    """Samples the dataset in proportion to how often the miner uses each sample.

    Each epoch embeds a random subset of `subset_size` samples (the whole dataset when None)
    with `model` (eval mode, no grad), mines it with `miner`, weights every sample by its count
    in the mined tuples (`loss_and_miner_utils.convert_to_weights`; samples outside the subset
    get 0), and yields `len(self)` indices drawn with replacement by those weights. Dataset
    items are (input, label, ...). Accepted tester kwargs: batch_size (32),
    dataloader_num_workers (0), data_device (the model's device). The subset and the draws
    come from `c_f.NUMPY_RANDOM` (see samplers.m_per_class_sampler.epoch_generator).
    """

    def __init__(self, model, miner, dataset, subset_size=None, **tester_kwargs):
        unsupported = sorted(set(tester_kwargs) - set(SUPPORTED_TESTER_KWARGS))
        if unsupported:
            raise TypeError(
                f"TuplesToWeightsSampler got unsupported arguments {unsupported}; "
                f"it accepts {list(SUPPORTED_TESTER_KWARGS)}."
            )
        if subset_size is not None and not 1 <= subset_size <= len(dataset):
            raise ValueError(
                f"subset_size must be between 1 and the dataset size ({len(dataset)}), got {subset_size}"
            )
        self.model = model
        self.miner = miner
        self.dataset = dataset
        self.subset_size = len(dataset) if subset_size is None else int(subset_size)
        self.batch_size = tester_kwargs.get("batch_size", 32)
        self.num_workers = tester_kwargs.get("dataloader_num_workers", 0)
        default_device = next(model.parameters(), torch.empty(0)).device
        self.device = tester_kwargs.get("data_device") or default_device
        self.weights = None

    def __len__(self):
        return self.subset_size

    def __iter__(self):
        generator = epoch_generator()
        subset = torch.randperm(len(self.dataset), generator=generator)[: self.subset_size]
        embeddings, labels = self.embed(subset)
        indices_tuple = self.miner(embeddings, labels)
        subset_weights = lmu.convert_to_weights(indices_tuple, labels, dtype=torch.float32)
        self.weights = torch.zeros(len(self.dataset))
        self.weights[subset] = subset_weights.cpu()
        return iter(
            torch.multinomial(
                self.weights, self.subset_size, replacement=True, generator=generator
            ).tolist()
        )

    def embed(self, subset):
        loader = DataLoader(
            Subset(self.dataset, subset.tolist()),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            shuffle=False,
        )
        was_training = self.model.training
        self.model.eval()
        embeddings, labels = [], []
        with torch.no_grad():
            for batch in loader:
                embeddings.append(self.model(batch[0].to(self.device)))
                labels.append(torch.as_tensor(batch[1]))
        self.model.train(was_training)
        return torch.cat(embeddings), torch.cat(labels).to(self.device)
