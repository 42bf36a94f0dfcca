"""DataLoaders for the runner: in-memory tensor datasets are indexed a whole batch at a time."""

from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, TensorDataset


def make_loader(dataset, batch_size, sampler=None, num_workers=0, pin_memory=False):
    """Batches of `dataset` in `sampler`'s order (sequential when None), last batch kept.

    A TensorDataset gets each batch from one indexing call instead of `batch_size` item fetches
    and a collate, which matters for small models on small data (the digits).
    """
    sampler = SequentialSampler(dataset) if sampler is None else sampler
    if isinstance(dataset, TensorDataset):
        batches = BatchSampler(sampler, batch_size, drop_last=False)
        return DataLoader(
            dataset,
            batch_size=None,
            sampler=batches,
            num_workers=num_workers,
            pin_memory=pin_memory,
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
