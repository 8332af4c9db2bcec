"""The real mobilenet_v2 gives the top-1 classes of ../shared/models/expected.json."""
import importlib.util
import json

import numpy as np
import pytest
import requests

from conftest import ROOT

spec = importlib.util.spec_from_file_location("predict_image", ROOT / "examples" / "client" / "predict_image.py")
client = importlib.util.module_from_spec(spec)
spec.loader.exec_module(client)

RESIZE = {"resize256_crop224": "crop", "plain_resize224": "plain"}


@pytest.mark.parametrize("image", ["chelsea.png", "coffee.png"])
@pytest.mark.parametrize("method", sorted(RESIZE))
def test_top1_matches_expected(examples_server, shared_models, image, method):
    expected = json.loads((shared_models / "expected.json").read_text())
    top = expected["images"]["mobilenet_v2"][image][method]
    instance = client.preprocess(shared_models / "images" / image, RESIZE[method])
    response = requests.post(f"{examples_server.url}/v1/models/mobilenet_v2:predict",
                             json={"instances": [instance.tolist()]}, timeout=120)
    assert response.status_code == 200, response.text
    logits = np.array(response.json()["predictions"][0])
    assert logits.shape == (1000,)
    probabilities = client.softmax(logits)
    assert int(np.argmax(probabilities)) == top[0]["index"], top[0]["label"]
    assert abs(float(probabilities.max()) - top[0]["probability"]) < 0.05


def test_batch_of_two_images_answers_each(examples_server, shared_models):
    images = [client.preprocess(shared_models / "images" / name) for name in ("chelsea.png", "coffee.png")]
    response = requests.post(f"{examples_server.url}/v1/models/mobilenet_v2:predict",
                             json={"inputs": np.stack(images).tolist()}, timeout=120)
    assert response.status_code == 200, response.text
    outputs = np.array(response.json()["outputs"])
    assert outputs.shape == (2, 1000)
    assert list(np.argmax(outputs, axis=1)) == [285, 967]
