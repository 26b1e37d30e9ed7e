import os
import sys
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Without a CUDA GPU, Triton runs kernels in its interpreter (lesson 13); it reads this
# variable when a kernel is defined, so it is set before any test imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
