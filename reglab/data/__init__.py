"""reglab.data: data sets as train / validation / test tensors, checked before the first step.

``load_data(config, seed)`` loads a data set by name (``DATASETS``: MNIST-1D, digits,
Fashion-MNIST, diabetes, or your ``.npz``/``.csv`` file), checks it and splits it by seed into a
``Data``; ``register_dataset`` adds your own loader under a name. See ``reglab.data.sets``.
"""

from reglab.data.files import read_idx
from reglab.data.sets import (
    DATASETS,
    FASHION_MNIST_DIR,
    FILE_FORMATS,
    LABEL_COLUMN,
    TEST_FRACTION,
    VALID_FRACTION,
    Dataset,
    Source,
    cache_dir,
    load_data,
    register_dataset,
)
from reglab.data.tensors import Data, check_arrays

__all__ = [
    "DATASETS", "FASHION_MNIST_DIR", "FILE_FORMATS", "LABEL_COLUMN", "TEST_FRACTION", "VALID_FRACTION", "Data",
    "Dataset", "Source", "cache_dir", "check_arrays", "load_data", "read_idx", "register_dataset",
]  # fmt: skip
