"""The tiny model the training tests train (demo.yaml, a narrow decoder, batch 8) on the split of the
`work` fixture (conftest.py: 3 folds of the generated demo data)."""
from pipeline.lib.config import load_config
from pipeline.lib.fold_data import FoldInputs
from pipeline.lib.paths import CONFIG_DIR, InputLayout

TINY = ["model.decoder_channels=[16,16,8,8,8]", "train.batch_size=8", "train.num_workers=0", "train.lr=0.003",
        "train.warmup_epochs=0", "predict.batch_size=16"]


def tiny(extra=()):
    return load_config(CONFIG_DIR / "demo.yaml", TINY + list(extra))


def inputs_of(demo_input, work):
    return FoldInputs.load(InputLayout(demo_input), work)


def experiment(work, extra=()):
    """Overrides that change training make their own experiment (demo-<digest>)."""
    return work.experiment(tiny(extra).name)
