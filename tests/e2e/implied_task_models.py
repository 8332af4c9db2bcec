"""The repository the implied-task tests serve (test_implied_tasks.py over REST,
tfserving/test_tfserving_implied_tasks.py over TF Serving gRPC): fixture models with no config
saying what `:classify` / `:regress` read, so the model's shape says it, beside ones whose config
does. Standard library only, so both virtualenvs can import it."""
import shutil

from conftest import FIXTURE_MODELS

# name served -> (fixture model, config.toml or None, labels.txt or None)
MODELS = {
    # TF Serving's half_plus_two as it is: x f32 [batch] -> y f32 [batch], one value an example.
    "half_plus_two_tf": ("half_plus_two_tf", None, None),
    # dense: x f32 [batch, 64] -> probs f32 [batch, 10], a score per class.
    "dense": ("dense", None, None),
    # The same scores through the config's labels and top_k, with no task named.
    "dense_top3": ("dense", '[outputs.probs]\nlabels = "labels.txt"\ntop_k = 3\n',
                   "".join(f"digit {i}\n" for i in range(10))),
    # The config's task overrides what the shape implies.
    "half_plus_two_classified": ("half_plus_two_tf", '[outputs.y]\ntask = "classification"\n', None),
    # Ambiguous: three outputs; an integer output.
    "multi_io": ("multi_io", None, None),
    "int_affine": ("int_affine", None, None),
}


def make_repository(repository):
    """Fills REPOSITORY (an empty directory) with MODELS and returns it."""
    for name, (fixture, config, labels) in MODELS.items():
        (repository / name / "1").mkdir(parents=True)
        shutil.copy(FIXTURE_MODELS / fixture / "1" / "model.onnx", repository / name / "1" / "model.onnx")
        if config is not None:
            (repository / name / "config.toml").write_text(config)
        if labels is not None:
            (repository / name / "labels.txt").write_text(labels)
    return repository


def dense_row(i):
    """A deterministic input row for dense (64 floats)."""
    return [((i * 64 + j) % 17 - 8) / 8.0 for j in range(64)]
