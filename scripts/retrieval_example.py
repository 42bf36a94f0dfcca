"""Image retrieval with InferenceModel on sklearn's 8x8 digits, in well under a minute on a CPU.

A small MLP is trained for a few hundred steps with a triplet loss on 70% of the images; the
other 30% form the search space. The script prints the retrieval accuracy of that search space
before and after training, then looks up the nearest neighbours of a few queries and checks
which pairs match.

    python scripts/retrieval_example.py
"""

import tempfile
from pathlib import Path

import torch
from sklearn.datasets import load_digits

from metric_runner.distances import CosineSimilarity
from metric_runner.losses import TripletMarginLoss
from metric_runner.miners import MultiSimilarityMiner
from metric_runner.utils.accuracy_calculator import AccuracyCalculator
from metric_runner.utils.inference import InferenceModel, MatchFinder


def load_split():
    digits = load_digits()
    images = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    train, gallery = order[: int(0.7 * len(order))], order[int(0.7 * len(order)) :]
    return (images[train], labels[train]), (images[gallery], labels[gallery])


def train(model, images, labels, steps=300, batch_size=128):
    loss_func = TripletMarginLoss(margin=0.2)
    miner = MultiSimilarityMiner(epsilon=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for step in range(steps):
        batch = torch.randint(0, len(images), (batch_size,), generator=generator)
        embeddings = model(images[batch])
        loss = loss_func(embeddings, labels[batch], miner(embeddings, labels[batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"step {step:3d}  loss {loss.item():.4f}")


def evaluate(model, images, labels):
    model.eval()
    with torch.no_grad():
        embeddings = torch.nn.functional.normalize(model(images), dim=1)
    calculator = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"), k="max_bin_count"
    )
    return calculator.get_accuracy(embeddings, labels)


def main():
    torch.manual_seed(0)
    (train_images, train_labels), (gallery_images, gallery_labels) = load_split()
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 32))
    print("unseen digits before training:", evaluate(model, gallery_images, gallery_labels))
    train(model, train_images, train_labels)
    print("unseen digits after training: ", evaluate(model, gallery_images, gallery_labels))

    inference_model = InferenceModel(
        model,
        match_finder=MatchFinder(distance=CosineSimilarity(), threshold=0.6),
        data_device="cpu",
    )
    inference_model.train_knn(gallery_images)
    queries = gallery_images[:5]
    distances, indices = inference_model.get_nearest_neighbors(queries, k=6)
    # Each query is in the gallery too, so its first neighbour is itself (distance 0).
    for query_label, neighbour_indices, neighbour_distances in zip(
        gallery_labels[:5], indices, distances
    ):
        neighbours = ", ".join(
            f"{gallery_labels[i].item()} ({d:.2f})"
            for i, d in zip(neighbour_indices[1:], neighbour_distances[1:])
        )
        print(f"query digit {query_label.item()} -> nearest digits (squared L2): {neighbours}")

    same_digit = gallery_images[gallery_labels == gallery_labels[0]][:3]
    other_digit = gallery_images[gallery_labels != gallery_labels[0]][:3]
    print("is_match, same digit: ", inference_model.is_match(same_digit, same_digit.flip(0)))
    print("is_match, other digit:", inference_model.is_match(same_digit, other_digit))
    pairs = inference_model.get_matches(gallery_images[:6], return_tuples=True)
    print("first 6 gallery digits:", gallery_labels[:6].tolist())
    print("their matching pairs (i < j):", [(int(i), int(j)) for i, j in pairs if i < j])

    with tempfile.TemporaryDirectory() as folder:
        index_file = Path(folder) / "digits.index"
        inference_model.save_knn_func(index_file)
        reloaded = InferenceModel(model, data_device="cpu")
        reloaded.load_knn_func(index_file)
        assert torch.equal(reloaded.get_nearest_neighbors(queries, k=6)[1], indices)
    print("the saved index answers the same after reloading")


if __name__ == "__main__":
    main()
