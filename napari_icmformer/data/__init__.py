"""Dataset readers shared by training and evaluation."""

from .readers import (
    DATASET_LAYOUTS,
    CocoInstances,
    DatasetError,
    FolderDataset,
    Sample,
    open_dataset,
    read_image,
)

__all__ = [
    "DATASET_LAYOUTS",
    "CocoInstances",
    "DatasetError",
    "FolderDataset",
    "Sample",
    "open_dataset",
    "read_image",
]
