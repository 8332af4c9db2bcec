"""TF Serving's `:classify` / `:regress` over REST without ceremony: a model whose only output
holds one value per example answers `:regress` as TF Serving's half_plus_two does, one whose
output holds a score per class answers `:classify`, a config's `task` still overrides, and
ambiguous models get a clear error naming why (docs/processing.md)."""
import math

import pytest
import requests

from conftest import Server
from implied_task_models import dense_row, make_repository

TIMEOUT = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(make_repository(tmp_path_factory.mktemp("implied-tasks")))
    yield server
    server.stop()


def post(server, path, body):
    return requests.post(f"{server.url}/v1/models/{path}", json=body, timeout=TIMEOUT)


def error_of(response):
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


def test_half_plus_two_regresses_as_tf_serving_does(server):
    # TF Serving's own example: x = 1, 2, 5 -> 2.5, 3.0, 4.5.
    response = post(server, "half_plus_two_tf:regress", {"examples": [{"x": 1.0}, {"x": 2.0}, {"x": 5.0}]})
    assert response.status_code == 200, response.text
    assert response.json() == {"results": [2.5, 3.0, 4.5]}
    # The same through a version, the context and an integer feature.
    response = post(server, "half_plus_two_tf/versions/1:regress", {"context": {"x": 4}, "examples": [{}, {"x": 0}]})
    assert response.status_code == 200, response.text
    assert response.json() == {"results": [4.0, 2.0]}


def test_a_score_per_class_classifies_best_first(server):
    rows = [dense_row(0), dense_row(1)]
    predicted = post(server, "dense:predict", {"instances": rows})
    assert predicted.status_code == 200, predicted.text
    response = post(server, "dense:classify", {"examples": [{"x": row} for row in rows]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 2
    for result, scores in zip(results, predicted.json()["predictions"]):
        # Every class, best first, labelled by its index.
        assert sorted(label for label, _ in result) == sorted(str(i) for i in range(10)), result
        assert [s for _, s in result] == sorted((s for _, s in result), reverse=True)
        for label, score in result:
            assert math.isclose(score, scores[int(label)], rel_tol=1e-5, abs_tol=1e-6)


def test_the_configs_labels_and_top_k_apply_to_the_implied_classification(server):
    row = dense_row(3)
    scores = post(server, "dense:predict", {"instances": [row]}).json()["predictions"][0]
    best = sorted(range(10), key=lambda i: -scores[i])[:3]
    response = post(server, "dense_top3:classify", {"examples": [{"x": row}]})
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert [label for label, _ in result] == [f"digit {i}" for i in best], (result, scores)


def test_the_configs_task_overrides_the_shape(server):
    response = post(server, "half_plus_two_classified:classify", {"examples": [{"x": 1.0}, {"x": 3.0}]})
    assert response.status_code == 200, response.text
    # One value an example: one class each.
    assert response.json() == {"results": [[["0", 2.5]], [["0", 3.5]]]}
    assert "regression" in error_of(post(server, "half_plus_two_classified:regress", {"examples": [{"x": 1.0}]}))


@pytest.mark.parametrize("path,why", [
    ("half_plus_two_tf:classify", "its output 'y' makes it a regression"),
    ("dense:regress", "its output 'probs' makes it a classification"),
    ("multi_io:classify", "it has 3 outputs"),
    ("int_affine:regress", "its output 'y' is INT64"),
])
def test_what_the_shape_does_not_imply_is_refused_saying_why(server, path, why):
    error = error_of(post(server, path, {"examples": [{"x": 1.0}]}))
    assert "signature" in error and why in error, error
    assert requests.get(f"{server.url}/v1/models/dense", timeout=TIMEOUT).status_code == 200
