"""A tiny complete run of demo.yaml on generated data (3 folds, one epoch), which the staleness, work-folder
and status tests copy before changing anything (the `trained` and `copy` fixtures of conftest.py)."""
from pipeline import predict, submit, train, tune
from pipeline.lib.config import load_config
from pipeline.lib.paths import CONFIG_DIR

TINY = ["model.decoder_channels=[16,16,8,8,8]", "train.epochs=1", "train.batch_size=8", "train.num_workers=0",
        "predict.batch_size=32"]
DEMO = str(CONFIG_DIR / "demo.yaml")


def stages(input_dir, workdir, *extra, only=("train", "predict", "tune", "submit")):
    io = ["--input", str(input_dir), "--workdir", str(workdir)]
    for name in only:
        if name == "train":
            train.main(["--config", DEMO, "--fold", "all", "--resume", *io, *TINY, *extra])
        else:
            {"predict": predict, "tune": tune, "submit": submit}[name].main(["--config", DEMO, *io, *TINY, *extra])


def name(*extra):
    return load_config(DEMO, TINY + list(extra)).name
