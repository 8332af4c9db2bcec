"""TF Serving's gRPC Classify and Regress without ceremony, through the official TF Serving API
stubs: the model's shape says which it answers when its config names no task (see
tests/e2e/test_implied_tasks.py for the same over REST)."""
import grpc
import pytest
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import classification_pb2, prediction_service_pb2_grpc, regression_pb2

from conftest import Server
from implied_task_models import dense_row, make_repository


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    server = Server(make_repository(tmp_path_factory.mktemp("implied-tasks")))
    with grpc.insecure_channel(server.grpc) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    server.stop()


def example(**floats):
    feature = {name: feature_pb2.Feature(float_list=feature_pb2.FloatList(value=value if isinstance(value, list)
                                                                          else [value]))
               for name, value in floats.items()}
    return example_pb2.Example(features=feature_pb2.Features(feature=feature))


def regress(stub, name, examples):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = name
    request.input.example_list.examples.extend(examples)
    return stub.Regress(request, timeout=60)


def classify(stub, name, examples):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = name
    request.input.example_list.examples.extend(examples)
    return stub.Classify(request, timeout=60)


def test_half_plus_two_regresses_as_tf_serving_does(stub):
    response = regress(stub, "half_plus_two_tf", [example(x=1.0), example(x=2.0), example(x=5.0)])
    assert [r.value for r in response.result.regressions] == [2.5, 3.0, 4.5]
    assert response.model_spec.name == "half_plus_two_tf"
    assert response.model_spec.version.value == 1


def test_a_score_per_class_classifies(stub):
    response = classify(stub, "dense", [example(x=dense_row(0))])
    [classes] = response.result.classifications
    assert sorted(c.label for c in classes.classes) == sorted(str(i) for i in range(10))
    scores = [c.score for c in classes.classes]
    assert scores == sorted(scores, reverse=True)
    assert abs(sum(scores) - 1.0) < 1e-4  # dense ends in a softmax
    top3 = classify(stub, "dense_top3", [example(x=dense_row(0))]).result.classifications[0].classes
    assert [c.label for c in top3] == [f"digit {c.label}" for c in classes.classes[:3]]


@pytest.mark.parametrize("call,name,why", [
    (classify, "half_plus_two_tf", "makes it a regression"),
    (regress, "dense", "makes it a classification"),
    (classify, "multi_io", "it has 3 outputs"),
])
def test_what_the_shape_does_not_imply_is_invalid_argument(stub, call, name, why):
    with pytest.raises(grpc.RpcError) as raised:
        call(stub, name, [example(x=1.0)])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert why in raised.value.details(), raised.value.details()
