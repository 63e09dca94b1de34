"""Keep triton out of the napari process, so the plugin cannot crash napari on Mesa OpenGL.

Root cause (reproduced under Xvfb/llvmpipe): the model stack needs timm, timm needs
``torchvision.ops`` (``timm.layers.create_norm`` imports ``FrozenBatchNorm2d`` from it), and
``torchvision.ops.roi_align`` imports ``torch._dynamo``, which imports ``triton`` whenever the
package is installed (the PyPI torch wheel pulls it in). ``triton`` loads its own statically
linked LLVM; once napari's canvas has loaded Mesa's libLLVM, the two clash and the process
segfaults. The plugin never compiles kernels, so in the napari process it declares triton
unavailable before anything imports torch's compiler stack: a ``None`` entry in
``sys.modules`` makes ``import triton`` raise ImportError, which torch handles as "triton not
installed" (``torch.utils._triton.has_triton_package``). torch itself is not patched, and the
command-line tools and training (no napari canvas) are unaffected.

Set ``NAPARI_ICMFORMER_ALLOW_TRITON=1`` to opt out (e.g. a napari session that needs
``torch.compile`` on a GPU with a non-Mesa driver).
"""

from __future__ import annotations

import os
import sys

ENV_OPT_OUT = "NAPARI_ICMFORMER_ALLOW_TRITON"


def keep_triton_out() -> bool:
    """Block ``import triton`` in this process unless it is already loaded or the user opted
    out. Returns True when the block is in place."""
    if os.environ.get(ENV_OPT_OUT, "") == "1":
        return False
    if sys.modules.get("triton", "absent") is None:
        return True  # already blocked
    if "triton" in sys.modules:
        return False  # loaded before us (someone else's choice): nothing left to prevent
    sys.modules["triton"] = None
    return True
