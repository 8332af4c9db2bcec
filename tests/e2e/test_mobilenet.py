"""The real mobilenet_v2 gives the top-1 classes of ../shared/models/expected.json, when the client
sends the normalised tensor the model takes (it passes the config's image pre-processing by)."""
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
    # The example's config answers the top 5 classes as "score:index:label" (after softmax).
    classes = response.json()["predictions"][0]
    assert len(classes) == 5
    score, index, label = classes[0].split(":", 2)
    assert int(index) == top[0]["index"] and label == top[0]["label"], classes
    assert abs(float(score) - top[0]["probability"]) < 0.05


def test_batch_of_two_images_answers_each(examples_server, shared_models):
    images = [client.preprocess(shared_models / "images" / name) for name in ("chelsea.png", "coffee.png")]
    response = requests.post(f"{examples_server.url}/v1/models/mobilenet_v2:predict",
                             json={"inputs": np.stack(images).tolist()}, timeout=120)
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert [row[0].split(":")[1] for row in outputs] == ["285", "967"]


def test_raw_logits_on_request(examples_server, shared_models):
    """V2's "raw" output parameter returns the model's own logits, not the config's top 5."""
    instance = client.preprocess(shared_models / "images" / "chelsea.png")
    body = {"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                        "data": instance.flatten().tolist()}],
            "outputs": [{"name": "logits", "parameters": {"raw": True}}]}
    response = requests.post(f"{examples_server.url}/v2/models/mobilenet_v2/infer", json=body,
                             timeout=120)
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    assert output["datatype"] == "FP32" and output["shape"] == [1, 1000]
    assert int(np.argmax(output["data"])) == 285
