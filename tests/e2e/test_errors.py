"""Client mistakes over raw HTTP: TF Serving's status codes and an {"error"} body, never a crash."""
import requests


def error_of(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"], body
    assert body["error"]
    return body["error"]


def test_errors_follow_tf_serving(examples_server):
    url = examples_server.url
    predict = f"{url}/v1/models/mobilenet_v2:predict"
    error_of(requests.post(predict, data="{not json", timeout=30), 400)
    error_of(requests.post(predict, json={"instances": [[1.0, 2.0]]}, timeout=30), 400)
    error_of(requests.post(predict, json={"instances": []}, timeout=30), 400)
    error_of(requests.post(predict, json={"instances": [[1]], "inputs": [[1]]}, timeout=30), 400)
    error_of(requests.post(predict, data="[" * 150_000 + "]" * 150_000, timeout=30), 400)
    assert "no_such_model" in error_of(
        requests.post(f"{url}/v1/models/no_such_model:predict", json={"instances": [1]}, timeout=30), 404)
    error_of(requests.get(f"{url}/v1/models/mobilenet_v2/versions/42", timeout=30), 404)
    error_of(requests.get(predict, timeout=30), 405)
    error_of(requests.get(f"{url}/no/such/route", timeout=30), 404)
    # Still serving.
    status = requests.get(f"{url}/v1/models/mobilenet_v2", timeout=30)
    assert status.status_code == 200
    assert status.json()["model_version_status"][0]["state"] == "AVAILABLE"
