"""A 2-D scatter plot of each split's embeddings, coloured by label: the tester's visualizer
(UMAP when umap-learn is installed, else PCA) and a visualizer_hook that saves PNG files."""

from pathlib import Path

import numpy as np


def default_visualizer():
    """umap.UMAP() when umap-learn is installed, else sklearn's PCA(n_components=2)."""
    try:
        import umap
    except ModuleNotFoundError:
        from sklearn.decomposition import PCA

        return PCA(n_components=2)
    return umap.UMAP()


class ScatterPlotHook:
    """visualizer_hook writing `<folder>/<split_name>_<keyname>_epoch<epoch>.png`.

    Pass it with a visualizer: `GlobalEmbeddingSpaceTester(visualizer=default_visualizer(),
    visualizer_hook=ScatterPlotHook("plots"))`. The paths written are kept in `saved_paths`.
    """

    def __init__(self, folder, point_size=4):
        self.folder = Path(folder)
        self.point_size = point_size
        self.saved_paths = []

    def __call__(self, visualizer, embeddings, labels, split_name, keyname, epoch):
        # Figure (not pyplot) draws with the Agg canvas, leaving the user's backend alone.
        from matplotlib.figure import Figure

        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[1] < 2:
            raise ValueError(
                f"The visualizer must return 2-D points (N, 2), got shape {embeddings.shape}."
            )
        _, colours = np.unique(np.asarray(labels), return_inverse=True)
        figure = Figure(figsize=(6, 6))
        axes = figure.add_subplot()
        axes.scatter(
            embeddings[:, 0], embeddings[:, 1], c=colours, s=self.point_size, cmap="nipy_spectral"
        )
        axes.set_title(f"{split_name} · {keyname} · epoch {epoch}")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{split_name}_{keyname}_epoch{epoch}.png"
        figure.savefig(path, dpi=100)
        self.saved_paths.append(path)
        return path
