"""Read CIFAR-10 in the official binary layout (cifar-10-batches-bin)."""
import os
from pathlib import Path

import numpy as np

RECORD = 3073
DEFAULT_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cifar10"


def data_dir() -> Path:
    """QUANTGRAPH_CIFAR10 if set, else ../shared/data/cifar10 beside the checkout."""
    env = os.environ.get("QUANTGRAPH_CIFAR10")
    return Path(env) if env else DEFAULT_DIR


def read_batch(path: Path):
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % RECORD != 0:
        raise ValueError(f"{path}: size {raw.size} is not a multiple of {RECORD} bytes")
    raw = raw.reshape(-1, RECORD)
    labels = raw[:, 0].astype(np.int64)
    images = raw[:, 1:].reshape(-1, 3, 32, 32)
    return images, labels


def load_train(root: Path):
    parts = [read_batch(root / f"data_batch_{i}.bin") for i in range(1, 6)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_test(root: Path):
    return read_batch(root / "test_batch.bin")
