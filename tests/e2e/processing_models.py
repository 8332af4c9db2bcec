"""The repository the pre/post-processing tests serve (docs/processing.md): the shared real models
with the example configs, and the two tabular fixtures (tests/e2e/fixtures/make_tabular.py).

Used by test_processing.py (tritonclient venv) and tfserving/test_tfserving_classify.py (TF
Serving stubs venv), so it needs nothing beyond the standard library and conftest.
"""
import json
import shutil
import time
import urllib.error
import urllib.request

import pytest

from conftest import ROOT, Server

EXAMPLES = ROOT / "examples"
TABULAR = ROOT / "tests" / "e2e" / "fixtures" / "models"
ALL_MODELS = ("mobilenet_v2", "efficientnet_lite0", "all_minilm_l6_v2", "breast_cancer", "diabetes")


def _link_model(repository, shared, name):
    (repository / name / "1").mkdir(parents=True)
    source = shared / name / "1" / "model.onnx"
    if not source.is_file():
        pytest.fail(f"{source} is missing from the shared models")
    (repository / name / "1" / "model.onnx").symlink_to(source)


def make_repository(repository, shared, models=ALL_MODELS):
    """Fills REPOSITORY (an empty directory) with MODELS, configured as the examples are:
    mobilenet_v2 with examples/models/mobilenet_v2's config.toml and labels.txt,
    efficientnet_lite0 and all_minilm_l6_v2 with examples/configs/NAME/* (MiniLM's tokenizer.json
    linked from the shared models), breast_cancer and diabetes copied from the fixtures."""
    for name in models:
        if name == "mobilenet_v2":
            _link_model(repository, shared, name)
            for file_name in ("config.toml", "labels.txt"):
                shutil.copy(EXAMPLES / "models" / name / file_name, repository / name / file_name)
        elif name in ("efficientnet_lite0", "all_minilm_l6_v2"):
            _link_model(repository, shared, name)
            for path in (EXAMPLES / "configs" / name).iterdir():
                shutil.copy(path, repository / name / path.name)
            if name == "all_minilm_l6_v2":
                (repository / name / "tokenizer.json").symlink_to(shared / name / "tokenizer.json")
        elif name in ("breast_cancer", "diabetes"):
            shutil.copytree(TABULAR / name, repository / name)
        else:
            raise ValueError(f"unknown model {name}")
    return repository


def wait_until_ready(server, models, timeout=300.0):
    """Polls GET /v2/models/NAME/ready until every model answers 200 (loading the real models
    on tract takes a few seconds each)."""
    deadline = time.monotonic() + timeout
    waiting = list(models)
    while waiting:
        name = waiting[0]
        try:
            with urllib.request.urlopen(f"{server.url}/v2/models/{name}/ready", timeout=10) as response:
                if response.status == 200:
                    waiting.pop(0)
                    continue
        except (urllib.error.URLError, OSError):
            pass
        failed = any("failed to load model" in line for line in server.log)
        if failed or server.process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"model {name} never became ready:\n" + "".join(server.log))
        time.sleep(0.2)


def start_server(repository, shared, models=ALL_MODELS, *args):
    """A server on a fresh repository of MODELS, once they are all ready. ONNX Runtime runs them
    (QUIVER_ONNXRUNTIME_LIB, which scripts/test.sh sets): MiniLM does not load on tract."""
    server = Server(make_repository(repository, shared, models), *args, onnxruntime=True)
    wait_until_ready(server, models)
    return server


def tabular_expected():
    return json.loads((TABULAR / "expected.json").read_text())


def shared_expected(shared):
    return json.loads((shared / "expected.json").read_text())


def imagenet_labels():
    return (EXAMPLES / "models" / "mobilenet_v2" / "labels.txt").read_text().splitlines()


def parse_classes(strings):
    """Triton's classification strings "score:index:label" (or "score:index" without labels; bytes
    or str) -> [(score, index, label or None)]; the "" entries of a row padded below a threshold
    are left out."""
    parsed = []
    for entry in strings:
        text = entry.decode() if isinstance(entry, bytes) else str(entry)
        if not text:
            continue
        parts = text.split(":", 2)
        assert len(parts) >= 2, f"not a classification string: {text!r}"
        parsed.append((float(parts[0]), int(parts[1]), parts[2] if len(parts) == 3 else None))
    return parsed
