"""The one inference path: averaging over models and TTA views, blank images, the image head."""
import numpy as np
import torch

from pipeline.lib.config import load_config
from pipeline.lib.inference import InferenceSettings, Predictor
from pipeline.lib.models import build_model
from pipeline.lib.paths import CONFIG_DIR

CPU = torch.device("cpu")


def setup(extra=()):
    config = load_config(CONFIG_DIR / "demo.yaml", ["model.decoder_channels=[16,16,8,8,8]", "model.empty_head=true",
                                                    "predict.batch_size=4", *extra])
    torch.manual_seed(0)
    models = [build_model(config.model, 1) for _ in range(2)]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 101, 101), dtype=np.uint8)
    images[2] = 77  # a blank image
    return config, models, images, np.full(6, 500.0, np.float32)


def test_models_are_averaged_and_heads_come_back():
    config, models, images, depths = setup()
    both = Predictor(models, InferenceSettings.of(config, CPU))(images, depths)
    single = [Predictor([m], InferenceSettings.of(config, CPU))(images, depths) for m in models]
    assert both.probs.shape == (6, 101, 101) and both.probs.dtype == np.float32
    assert np.allclose(both.probs, (single[0].probs + single[1].probs) / 2, atol=1e-5)
    assert np.allclose(both.salt_prob, (single[0].salt_prob + single[1].salt_prob) / 2, atol=1e-5)


class Mirrored(torch.nn.Module):
    """A model seen through a mirror: flips its input and flips its outputs back."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        masks, head = self.model(x.flip(-1))
        return masks.flip(-1), head


def test_flip_tta_is_the_mean_of_the_view_and_its_mirror():
    config, models, images, depths = setup(["predict.tta=none"])
    plain = Predictor(models[:1], InferenceSettings.of(config, CPU))(images, depths)
    mirrored = Predictor([Mirrored(models[0])], InferenceSettings.of(config, CPU))(images, depths)
    flip_config = config.model_copy(update={"predict": config.predict.model_copy(update={"tta": "hflip"})})
    flip = Predictor(models[:1], InferenceSettings.of(flip_config, CPU))(images, depths)
    assert np.allclose(flip.probs, (plain.probs + mirrored.probs) / 2, atol=1e-5)
    assert np.allclose(flip.salt_prob, (plain.salt_prob + mirrored.salt_prob) / 2, atol=1e-5)
    assert not np.allclose(plain.probs, mirrored.probs, atol=1e-3)  # the two views do differ


def test_blank_images_are_empty_only_when_training_dropped_them():
    config, models, images, depths = setup(["data.drop_blank=true"])
    assert (Predictor(models, InferenceSettings.of(config, CPU))(images, depths).probs[2] == 0).all()
    config, models, images, depths = setup()
    assert (Predictor(models, InferenceSettings.of(config, CPU))(images, depths).probs[2] > 0).any()


def test_the_benchmark_measures_the_inference_path():
    from pipeline import bench
    config, models, images, _ = setup()
    rate = bench.infer_rate(models[0], InferenceSettings.of(config, CPU), images)
    assert rate > 0


def test_prepared_inputs_give_the_same_prediction():
    """Validation keeps its inputs on the device between epochs; the result is what the loader path gives."""
    config, models, images, depths = setup()
    predictor = Predictor(models, InferenceSettings.of(config, CPU))
    inputs = predictor.prepare(images, depths)
    assert inputs.shape == (6, 1, 128, 128)
    direct, prepared = predictor(images, depths), predictor(images, depths, inputs=inputs)
    assert np.array_equal(direct.probs, prepared.probs) and np.array_equal(direct.salt_prob, prepared.salt_prob)


def test_bf16_prediction_stays_close_to_float32():
    """predict.cpu_precision=bf16 (auto on CPUs with AMX tiles) changes probabilities by rounding only: on
    trained checkpoints the tuned mAP moved by <= 0.001 (docs/results.md)."""
    runs = {}
    for precision in ("float32", "bf16"):
        config, models, images, depths = setup([f"predict.cpu_precision={precision}"])
        runs[precision] = Predictor(models, InferenceSettings.of(config, CPU))(images, depths)
    assert np.abs(runs["bf16"].probs - runs["float32"].probs).max() < 0.05
    assert np.abs(runs["bf16"].salt_prob - runs["float32"].salt_prob).max() < 0.05
    assert not np.array_equal(runs["bf16"].probs, runs["float32"].probs)  # bf16 did run


def test_settings_are_resolved_once_from_the_config():
    """Everything prediction reads comes from one object: the data section, TTA, batch, layout, workers and
    the precision as it resolves on the device."""
    config, _, _, _ = setup(["predict.cpu_precision=bf16", "train.num_workers=5", "train.channels_last=false"])
    settings = InferenceSettings.of(config, CPU)
    assert (settings.data, settings.tta, settings.batch_size) == (config.data, "hflip", 4)
    assert (settings.workers, settings.channels_last, settings.precision.name) == (2, False, "bf16")
    assert settings.but(tta="none").tta == "none" and settings.tta == "hflip"
