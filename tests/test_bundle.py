"""The Kaggle upload folders: code, the wheels closure for what the image lacks, weights."""
import json
import zipfile

import pytest

from pipeline import bundle


def fake_wheel(folder, name, version, requires=()):
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    metadata = "\n".join([f"Name: {name}", f"Version: {version}"] + [f"Requires-Dist: {r}" for r in requires])
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", metadata + "\n")
    return path


def test_a_wheels_requirements_follow_the_kernels_python(tmp_path):
    wheel = fake_wheel(tmp_path, "smp", "1.0", ["timm>=0.9", "torch", 'typing-extensions; python_version < "3.8"',
                                                 'pytest; extra == "test"', 'pywin32; sys_platform == "win32"'])
    assert bundle.wheel_requirements(wheel, "3.11") == ["timm>=0.9", "torch"]


def test_the_wheels_closure_leaves_out_what_the_image_has(tmp_path, monkeypatch):
    index = {"segmentation-models-pytorch": ["timm>=0.9", "torch", "huggingface-hub"],
             "timm": ["torch", "torchvision", "huggingface-hub", "safetensors"],
             "huggingface-hub": ["tqdm", "packaging"], "safetensors": [], "torch": ["nvidia-cudnn-cu12"],
             "tqdm": [], "packaging": []}
    fetched = []

    def download(requirement, folder, python_version):
        name = bundle.requirement_name(requirement)
        fetched.append(name)
        return [fake_wheel(folder, name, "1.0", index[name])]

    monkeypatch.setattr(bundle, "download", download)
    bundle.collect_wheels(["segmentation-models-pytorch>=0.3"], tmp_path / "w", "3.11", bundle.IMAGE_HAS)
    assert fetched == ["segmentation-models-pytorch", "timm", "huggingface-hub", "safetensors"]
    fetched.clear()
    bundle.collect_wheels(["segmentation-models-pytorch>=0.3"], tmp_path / "all", "3.11", bundle.TORCH_FAMILY)
    assert "tqdm" in fetched and "torch" not in fetched and not any(n.startswith("nvidia") for n in fetched)


def test_a_failed_download_leaves_no_half_filled_wheels_folder(tmp_path, monkeypatch):
    def download(requirement, folder, python_version):
        name = bundle.requirement_name(requirement)
        if name == "timm":
            raise SystemExit(f"error: could not download a wheel of {requirement}")
        return [fake_wheel(folder, name, "1.0", [])]

    monkeypatch.setattr(bundle, "download", download)
    monkeypatch.setattr(bundle, "tracked_files", lambda: [])
    wheels = tmp_path / "up" / "tgs-wheels"
    wheels.mkdir(parents=True)
    (wheels / "old-1.0-py3-none-any.whl").write_bytes(b"old")
    with pytest.raises(SystemExit, match="could not download a wheel of timm"):
        bundle.main(["--out", str(tmp_path / "up"), "--owner", "me"])
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == ["tgs-pipeline", "tgs-wheels"]
    assert [p.name for p in wheels.iterdir()] == ["old-1.0-py3-none-any.whl"]  # as it was
    monkeypatch.setattr(bundle, "download", lambda req, folder, py: [fake_wheel(folder, bundle.requirement_name(req), "1.0")])
    bundle.main(["--out", str(tmp_path / "up"), "--owner", "me"])
    names = {p.name for p in wheels.iterdir()}
    assert {"old-1.0-py3-none-any.whl", "timm-1.0-py3-none-any.whl", "dataset-metadata.json"} <= names
    assert not (tmp_path / "up" / "tgs-wheels.partial").exists()


def test_the_code_and_weights_folders(tmp_path):
    weights = tmp_path / "resnet34.pth"
    weights.write_bytes(b"weights")
    bundle.main(["--out", str(tmp_path / "up"), "--no-wheels", "--weights", str(weights), "--owner", "me"])
    code = tmp_path / "up" / "tgs-pipeline"
    for name in ["run.sh", "requirements.txt", "README.md", "pipeline/train.py", "pipeline/lib/models.py"]:
        assert (code / name).is_file(), name
    files = [path.relative_to(code) for path in code.rglob("*") if path.is_file()]
    assert not any(path.parts[0] in {"experiments", "cache", "demo"} or "__pycache__" in path.parts for path in files)
    assert all(path.name == "README.md" for path in files if path.parts[0] in {"input", "folds", "submissions"})
    assert json.loads((code / "dataset-metadata.json").read_text())["id"] == "me/tgs-pipeline"
    assert (tmp_path / "up" / "tgs-weights" / "resnet34.pth").read_bytes() == b"weights"
    assert not (tmp_path / "up" / "tgs-wheels").exists()


def test_a_missing_weights_file_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match=f"weights file {tmp_path / 'gone.pth'} does not exist"):
        bundle.main(["--out", str(tmp_path / "up"), "--no-wheels", "--weights", str(tmp_path / "gone.pth")])
