"""Manifests: loading, one-line errors, sha256 verification, on the repo's real models."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import ArtifactError, LookoutError
from app.zoo import dumps_manifest, list_manifests, load_manifest, sha256_file


def test_repo_manifests_load_and_verify(models_dir: Path) -> None:
    manifests = {m.name: m for m in list_manifests(models_dir)}
    assert {"blazeface-short", "blazeface-back"} <= set(manifests)
    short = manifests["blazeface-short"]
    assert (short.input.width, short.input.height) == (128, 128)
    assert manifests["blazeface-back"].input.width == 256
    assert short.outputs == ["regressors", "classificators"]
    for m in manifests.values():
        assert (m.dir / m.provenance.licence_file).is_file()
        for key in m.artifacts:
            assert m.verify_artifact(key).is_file()


def test_output_order_matches_the_tflite_graph(models_dir: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    for m in list_manifests(models_dir):
        it = Interpreter(model_path=str(m.verify_artifact("tflite")))
        assert [d["name"] for d in it.get_output_details()] == m.outputs
        assert list(it.get_input_details()[0]["shape"]) == [1, m.input.height, m.input.width, 3]


def test_roundtrip_writes_the_same_manifest(models_dir: Path) -> None:
    m = load_manifest("blazeface-short", models_dir)
    assert dumps_manifest(m) == m.path.read_text()


def test_unknown_key_is_a_one_line_error(zoo_copy: Path) -> None:
    path = zoo_copy / "blazeface-short" / "model.toml"
    path.write_text(path.read_text().replace("[input]\n", "[input]\nwidht = 3\n"))
    with pytest.raises(ArtifactError) as err:
        load_manifest("blazeface-short", zoo_copy)
    msg = str(err.value)
    assert "\n" not in msg and "input.widht" in msg and str(path) in msg


def test_decoder_must_be_a_registered_plugin(zoo_copy: Path) -> None:
    path = zoo_copy / "blazeface-short" / "model.toml"
    path.write_text(path.read_text().replace('decoder = "blazeface"', 'decoder = "blazefaces"'))
    with pytest.raises(ArtifactError) as err:
        load_manifest("blazeface-short", zoo_copy)
    msg = str(err.value)
    assert "\n" not in msg and "'blazefaces' is not registered in lookout.decoders" in msg and "yolo" in msg


def test_bad_toml_and_missing_manifest(zoo_copy: Path) -> None:
    with pytest.raises(LookoutError, match=r"missing manifest .*nope.*known models: blazeface-short"):
        load_manifest("nope", zoo_copy)
    path = zoo_copy / "blazeface-short" / "model.toml"
    path.write_text("name = \n")
    with pytest.raises(ArtifactError, match=r"bad TOML in .*model.toml"):
        load_manifest("blazeface-short", zoo_copy)


def test_unknown_artifact_key_names_the_available_ones(models_dir: Path) -> None:
    m = load_manifest("blazeface-short", models_dir)
    with pytest.raises(ArtifactError, match=r"no artifact 'edgetpu-x' \(available: .*tflite"):
        m.artifact_path("edgetpu-x")


def test_sha_mismatch_and_missing_file(zoo_copy: Path) -> None:
    m = load_manifest("blazeface-short", zoo_copy)
    path = m.artifact_path("tflite")
    expected = sha256_file(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as err:
        m.verify_artifact("tflite")
    assert str(err.value) == f"sha256 mismatch for {path}: expected {expected} got {sha256_file(path)}"
    path.unlink()
    with pytest.raises(ArtifactError, match=f"missing file {path}"):
        m.verify_artifact("tflite")
