"""The Kaggle upload: the wheels pip resolves for the kernel minus the image's, weights, the kernel folder."""
import ast
import json
import zipfile

import pytest

from pipeline import bundle
from pipeline.lib import kaggle_kernel

TINY = ["train.epochs=1"]


def fake_wheel(folder, name, version="1.0"):
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", f"Name: {name}\nVersion: {version}\n")
    return path


@pytest.fixture
def fake_pip(monkeypatch):
    """pip's resolution and downloads, offline: the project needs smp, timm, torch (+ nvidia), numpy."""
    calls = []
    project = {"tgs-salt-pipeline": "0.8.0", "segmentation-models-pytorch": "0.6.0", "timm": "1.0", "torch": "2.9",
               "nvidia-cudnn-cu12": "9", "numpy": "2.0", "huggingface-hub": "1.0", "tqdm": "4.0"}
    image = {"torch": "2.9", "nvidia-cudnn-cu12": "9", "numpy": "2.0", "tqdm": "4.0", "filelock": "3", "timm": "1.0"}

    def resolve(requirements, flags, what):
        calls.append(("resolve", requirements))
        return image if "torch" in requirements else project

    def pip(args, what):
        calls.append(("pip", args))
        if args[0] == "download":
            folder = bundle.Path(args[args.index("-d") + 1])
            for req in [a for a in args if "==" in a]:
                fake_wheel(folder, *req.split("=="))

    monkeypatch.setattr(bundle, "resolve", resolve)
    monkeypatch.setattr(bundle, "pip", pip)
    monkeypatch.setattr(bundle, "build_project_wheel", lambda folder: fake_wheel(folder, "tgs-salt-pipeline", "0.8.0"))
    return calls


def test_the_wheels_folder_holds_what_the_image_lacks(tmp_path, fake_pip):
    bundle.main(["--out", str(tmp_path / "up"), "--config", "demo.yaml", "--owner", "me"])
    names = sorted(p.name for p in (tmp_path / "up" / "tgs-wheels").iterdir())
    assert names == ["dataset-metadata.json", "huggingface_hub-1.0-py3-none-any.whl",
                     "segmentation_models_pytorch-0.6.0-py3-none-any.whl", "tgs_salt_pipeline-0.8.0-py3-none-any.whl"]
    download = next(args for kind, args in fake_pip if kind == "pip" and args[0] == "download")
    assert {"--no-deps", "--only-binary=:all:", "--python-version", "3.12"} <= set(download)  # Kaggle's image
    assert {"timm", "albumentations"} <= set(bundle.IMAGE)  # the image ships them (Kaggle/docker-python's tests)
    resolved = next(reqs for kind, reqs in fake_pip if kind == "resolve" and "torch" not in reqs)
    assert resolved[0].endswith(".whl[weights]")  # the project's own wheel, with the ImageNet weights extra
    metadata = json.loads((tmp_path / "up" / "tgs-wheels" / "dataset-metadata.json").read_text())
    assert metadata["id"] == "me/tgs-wheels" and 6 <= len(metadata["title"]) <= 50  # the kaggle CLI's limits


def test_a_kernel_freeze_names_what_the_image_has(tmp_path, fake_pip):
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("timm==0.9.16\nhuggingface-hub @ file:///tmp/x.whl\nnumpy==1.26\n")
    bundle.main(["--out", str(tmp_path / "up"), "--config", "demo.yaml", "--image-freeze", str(freeze), "--owner", "me"])
    names = {p.name.split("-")[0] for p in (tmp_path / "up" / "tgs-wheels").glob("*.whl")}
    assert names == {"tgs_salt_pipeline", "segmentation_models_pytorch", "tqdm"}


def test_a_failed_download_leaves_the_old_wheels_folder(tmp_path, fake_pip, monkeypatch):
    wheels = tmp_path / "up" / "tgs-wheels"
    wheels.mkdir(parents=True)
    (wheels / "old-1.0-py3-none-any.whl").write_bytes(b"old")
    monkeypatch.setattr(bundle, "pip", lambda args, what: (_ for _ in ()).throw(SystemExit("error: pip could not x")))
    with pytest.raises(SystemExit, match="pip could not"):
        bundle.main(["--out", str(tmp_path / "up"), "--config", "demo.yaml", "--owner", "me"])
    assert [p.name for p in wheels.iterdir()] == ["old-1.0-py3-none-any.whl"]
    assert not (tmp_path / "up" / "tgs-wheels.partial").exists()


def test_the_kernel_folder_runs_the_chosen_experiment_offline(tmp_path, fake_pip, capsys):
    bundle.main(["--out", str(tmp_path / "up"), "--config", "demo.yaml", "--owner", "me", "--", *TINY])
    kernel = tmp_path / "up" / "tgs-salt-kernel"
    metadata = json.loads((kernel / "kernel-metadata.json").read_text())
    assert metadata["enable_gpu"] is True and metadata["enable_internet"] is False
    assert metadata["machine_shape"] == "NvidiaTeslaT4"  # GPU T4 x2: enable_gpu alone has been getting P100s
    assert metadata["dataset_sources"] == ["me/tgs-wheels"]
    assert metadata["competition_sources"] == ["tgs-salt-identification-challenge"]
    assert metadata["kernel_type"] == "script" and (kernel / metadata["code_file"]).is_file()
    assert metadata["id"] == f"me/{metadata['title']}" and len(metadata["title"]) >= 5
    script = (kernel / metadata["code_file"]).read_text()
    tree = ast.parse(script)
    imports = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imports |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imports <= {"__future__", "hashlib", "os", "subprocess", "sys", "pathlib", "yaml"}  # before any install
    settings = next(ast.literal_eval(node.value) for node in tree.body
                    if isinstance(node, ast.Assign) and node.targets[0].id == "SETTINGS")
    assert settings["name"].startswith("demo-") and "epochs: 1" in settings["config"]
    own = tmp_path / "up" / "tgs-wheels" / "tgs_salt_pipeline-0.8.0-py3-none-any.whl"
    assert settings["wheel"] == {"name": own.name, "sha256": kaggle_kernel.sha256(own)}
    out = capsys.readouterr().out
    assert f"kaggle datasets create -p {tmp_path / 'up' / 'tgs-wheels'}" in out
    assert f"kaggle datasets version -p {tmp_path / 'up' / 'tgs-wheels'} -m" in out  # a dataset that exists
    assert f"kaggle kernels push -p {kernel}" in out


def test_weights_go_in_their_own_dataset_and_the_kernel_finds_them(tmp_path, fake_pip):
    weights = tmp_path / "resnet34.pth"
    weights.write_bytes(b"weights")
    bundle.main(["--out", str(tmp_path / "up"), "--config", "default.yaml", "--weights", str(weights), "--owner", "me"])
    assert (tmp_path / "up" / "tgs-weights" / "resnet34.pth").read_bytes() == b"weights"
    metadata = json.loads((tmp_path / "up" / "tgs-salt-kernel" / "kernel-metadata.json").read_text())
    assert metadata["dataset_sources"] == ["me/tgs-wheels", "me/tgs-weights"]


def test_an_imagenet_start_an_offline_kernel_cannot_get_is_refused_here(tmp_path, fake_pip):
    with pytest.raises(SystemExit, match="starts resnet34 from imagenet, which a kernel without internet cannot download"):
        bundle.main(["--out", str(tmp_path / "up"), "--config", "default.yaml", "--owner", "me"])
    assert not (tmp_path / "up").exists()
    bundle.main(["--out", str(tmp_path / "up"), "--config", "cpu.yaml", "--owner", "me"])  # its weights come in a wheel


def test_a_missing_weights_file_is_one_line(tmp_path, fake_pip):
    with pytest.raises(SystemExit, match=f"weights file {tmp_path / 'gone.pth'} does not exist"):
        bundle.main(["--out", str(tmp_path / "up"), "--config", "demo.yaml", "--weights", str(tmp_path / "gone.pth"),
                     "--owner", "me"])


def test_the_kernel_finds_its_datasets_by_what_they_hold(tmp_path):
    root = tmp_path / "input"
    wheels = root / "datasets" / "me" / "tgs-wheels"
    wheels.mkdir(parents=True)
    fake_wheel(wheels, "tgs-salt-pipeline", "0.8.0")
    competition = root / "competitions" / "tgs-salt-identification-challenge"
    competition.mkdir(parents=True)
    for name in ("train.csv", "sample_submission.csv", "train.zip"):
        (competition / name).write_text("x")
    (root / "other" / "train.csv").parent.mkdir(parents=True)
    (root / "other" / "train.csv").write_text("not the competition")
    (root / "weights" / "deep").mkdir(parents=True)
    (root / "weights" / "deep" / "resnet34.pth").write_bytes(b"w")
    assert kaggle_kernel.find_wheels(root) == wheels
    assert kaggle_kernel.find_competition(root) == competition
    assert kaggle_kernel.find_file("resnet34.pth", root) == root / "weights" / "deep" / "resnet34.pth"
    assert kaggle_kernel.find_file("gone.pth", root) is None


@pytest.mark.parametrize("name, words", [("NvidiaTeslaP100", "is refused: retired"), ("TpuV5E8", "is refused: a TPU"),
                                         ("NvidiaA100", "unknown --accelerator NvidiaA100; valid: NvidiaTeslaT4")])
def test_an_accelerator_kaggle_retired_or_we_cannot_use_is_one_line(tmp_path, fake_pip, name, words):
    with pytest.raises(SystemExit, match=words):
        bundle.main(["--out", str(tmp_path / "up"), "--config", "demo.yaml", "--owner", "me", "--accelerator", name])
    assert not (tmp_path / "up").exists()


def test_a_cpu_kernel_asks_for_no_gpu(tmp_path, fake_pip):
    bundle.main(["--out", str(tmp_path / "up"), "--config", "cpu.yaml", "--owner", "me", "--accelerator", "none"])
    metadata = json.loads((tmp_path / "up" / "tgs-salt-kernel" / "kernel-metadata.json").read_text())
    assert metadata["enable_gpu"] is False and "machine_shape" not in metadata


def test_the_kernel_refuses_a_wheels_dataset_of_another_bundle(tmp_path, capsys):
    own = fake_wheel(tmp_path, "tgs-salt-pipeline", "0.9.0")
    bundled = {"name": own.name, "sha256": kaggle_kernel.sha256(own)}
    assert kaggle_kernel.bundled_wheel(tmp_path, bundled) == own
    with pytest.raises(SystemExit) as refused:
        kaggle_kernel.bundled_wheel(tmp_path, {**bundled, "sha256": "0" * 64})
    said = capsys.readouterr().err
    assert refused.value.code == 2 and said.count("\n") == 1
    assert f"holds {own.name}, not the project wheel this kernel was bundled with" in said
    assert "python -m pipeline.bundle --push" in said
