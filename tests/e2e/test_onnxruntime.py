"""The shared real models served by the ONNX Runtime engine, through Triton's own clients."""
import json
import pathlib

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image

from conftest import ROOT, Server

NORMALISATION = {
    "mobilenet_v2": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "efficientnet_lite0": ((0.498, 0.498, 0.498), (0.502, 0.502, 0.502)),
}
# Token ids of expected.json's three sentences from the model's tokenizer.json (computed once with
# Hugging Face `tokenizers`, no padding); the server takes token ids until text pre-processing lands.
SENTENCE_TOKENS = [
    [101, 1037, 2158, 2003, 5983, 2833, 1012, 102],
    [101, 1037, 2158, 2003, 5983, 1037, 3538, 1997, 7852, 1012, 102],
    [101, 1996, 2047, 3185, 2003, 12476, 1012, 102],
]


@pytest.fixture(scope="module")
def ort_server(tmp_path_factory, shared_models, onnxruntime_library):
    repository = tmp_path_factory.mktemp("ort-repository")
    for name in ["mobilenet_v2", "efficientnet_lite0", "all_minilm_l6_v2"]:
        (repository / name).symlink_to(shared_models / name)
    (repository / "dense").symlink_to(ROOT / "crates" / "test-support" / "fixtures" / "models" / "dense")
    server = Server(repository, "--onnxruntime-lib", onnxruntime_library, onnxruntime=True)
    yield server
    server.stop()


def plain_resize(path, model):
    mean, std = NORMALISATION[model]
    image = Image.open(path).convert("RGB").resize((224, 224), Image.BICUBIC)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return ((pixels - np.array(mean, np.float32)) / np.array(std, np.float32)).transpose(2, 0, 1)


def test_models_report_the_onnxruntime_platform(ort_server):
    client = httpclient.InferenceServerClient(ort_server.url.removeprefix("http://"))
    for name in ["mobilenet_v2", "efficientnet_lite0", "all_minilm_l6_v2", "dense"]:
        assert client.is_model_ready(name)
        assert client.get_model_metadata(name)["platform"] == "onnxruntime_onnx"
        assert client.get_model_config(name)["backend"] == "onnxruntime"


@pytest.mark.parametrize("model", sorted(NORMALISATION))
def test_image_models_match_the_reference_over_grpc(ort_server, shared_models, model):
    expected = json.loads((shared_models / "expected.json").read_text())["images"][model]
    client = grpcclient.InferenceServerClient(ort_server.grpc)
    images = ["chelsea.png", "coffee.png"]
    batch = np.stack([plain_resize(shared_models / "images" / name, model) for name in images])
    infer_input = grpcclient.InferInput("input", list(batch.shape), "FP32")
    infer_input.set_data_from_numpy(batch)
    logits = client.infer(model, [infer_input]).as_numpy("logits")
    assert logits.shape == (2, 1000)
    for row, name in zip(logits, images):
        top = expected[name]["plain_resize224"][0]
        probabilities = np.exp(row - row.max())
        probabilities /= probabilities.sum()
        assert int(np.argmax(row)) == top["index"], (name, top["label"])
        assert abs(float(probabilities.max()) - top["probability"]) < 0.05


def test_minilm_embeddings_match_the_reference(ort_server, shared_models):
    expected = json.loads((shared_models / "expected.json").read_text())["text"]["all_minilm_l6_v2"]
    client = httpclient.InferenceServerClient(ort_server.url.removeprefix("http://"))
    embeddings = []
    for ids in SENTENCE_TOKENS:
        inputs = []
        for name, values in [("input_ids", ids), ("attention_mask", [1] * len(ids)),
                             ("token_type_ids", [0] * len(ids))]:
            tensor = httpclient.InferInput(name, [1, len(ids)], "INT64")
            tensor.set_data_from_numpy(np.array([values], np.int64), binary_data=True)
            inputs.append(tensor)
        hidden = client.infer("all_minilm_l6_v2", inputs).as_numpy("last_hidden_state")[0]
        mean = hidden.mean(axis=0)
        embeddings.append(mean / np.linalg.norm(mean))
    for i, embedding in enumerate(embeddings):
        np.testing.assert_allclose(embedding[:8], expected["embedding_first8"][i], atol=1e-3)
    cosine = np.array(embeddings) @ np.array(embeddings).T
    np.testing.assert_allclose(cosine, expected["cosine"], atol=1e-3)
