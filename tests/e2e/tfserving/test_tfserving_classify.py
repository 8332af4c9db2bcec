"""TF Serving's gRPC Classify and Regress (docs/processing.md), driven by the official TF Serving
API stubs with tf.Example inputs: the tabular fixtures (tests/e2e/fixtures/models) and the shared
mobilenet_v2 with its example config, which classifies an encoded image held in a bytes feature."""
import grpc
import pytest
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import classification_pb2, prediction_service_pb2_grpc, regression_pb2

from processing_models import shared_expected, start_server, tabular_expected

MODELS = ("mobilenet_v2", "breast_cancer", "diabetes")


@pytest.fixture(scope="module")
def server(tmp_path_factory, shared_models):
    server = start_server(tmp_path_factory.mktemp("classify-repository"), shared_models, MODELS)
    yield server
    server.stop()
    print("---- server log ----")
    print("".join(server.log))


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def tabular():
    return tabular_expected()


def example(**features):
    """A tf.Example: bytes values become a bytes_list feature, lists of numbers a float_list."""
    feature = {}
    for name, value in features.items():
        if isinstance(value, bytes):
            feature[name] = feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[value]))
        else:
            feature[name] = feature_pb2.Feature(float_list=feature_pb2.FloatList(value=value))
    return example_pb2.Example(features=feature_pb2.Features(feature=feature))


def classify(stub, name, examples, context=None):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = name
    if context is None:
        request.input.example_list.examples.extend(examples)
    else:
        request.input.example_list_with_context.examples.extend(examples)
        request.input.example_list_with_context.context.CopyFrom(context)
    return stub.Classify(request, timeout=120)


def regress(stub, name, examples, context=None):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = name
    if context is None:
        request.input.example_list.examples.extend(examples)
    else:
        request.input.example_list_with_context.examples.extend(examples)
        request.input.example_list_with_context.context.CopyFrom(context)
    return stub.Regress(request, timeout=120)


def code_of(call, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as raised:
        call(*args, **kwargs)
    return raised.value.code()


def test_classify_tabular(stub, tabular):
    reference = tabular["breast_cancer"]
    response = classify(stub, "breast_cancer", [example(x=row) for row in reference["x"]])
    assert response.model_spec.name == "breast_cancer"
    assert response.model_spec.version.value == 1
    classifications = response.result.classifications
    assert len(classifications) == len(reference["x"])
    for classification, probabilities, predicted in zip(classifications, reference["predict_proba"],
                                                        reference["predict"]):
        classes = [(c.label, c.score) for c in classification.classes]
        # No top_k in the config: every class, best first.
        assert sorted(label for label, _ in classes) == ["benign", "malignant"], classes
        assert [s for _, s in classes] == sorted((s for _, s in classes), reverse=True), classes
        assert classes[0][0] == reference["labels"][predicted], classes
        by_label = dict(classes)
        for label, probability in zip(reference["labels"], probabilities):
            assert abs(by_label[label] - probability) < 1e-4, (classes, probabilities)


def test_classify_image_in_a_bytes_feature(stub, shared_models):
    """The encoded image in a bytes_list feature named after the image input: a PNG (chelsea) and
    a JPEG (grace_hopper) in one request."""
    images = shared_models / "images"
    expected = shared_expected(shared_models)["images"]["mobilenet_v2"]
    response = classify(stub, "mobilenet_v2", [example(input=(images / "chelsea.png").read_bytes()),
                                                 example(input=(images / "grace_hopper.jpg").read_bytes())])
    cat, hopper = response.result.classifications
    assert len(cat.classes) == 5  # the config's top_k
    assert cat.classes[0].label == "Egyptian cat", cat
    assert abs(cat.classes[0].score - expected["chelsea.png"]["resize256_crop224"][0]["probability"]) < 0.1
    assert [c.score for c in cat.classes] == sorted((c.score for c in cat.classes), reverse=True)
    assert hopper.classes[0].label == expected["grace_hopper.jpg"]["resize256_crop224"][0]["label"], hopper  # bow tie


def test_regress_tabular(stub, tabular):
    reference = tabular["diabetes"]
    response = regress(stub, "diabetes", [example(x=row) for row in reference["x"]])
    assert response.model_spec.name == "diabetes"
    values = [r.value for r in response.result.regressions]
    assert len(values) == len(reference["predict"])
    for value, prediction in zip(values, reference["predict"]):
        assert abs(value - prediction) < 1e-3, (values, reference["predict"])


def test_example_list_with_context(stub, tabular):
    """The context's features are every example's: here all of them, with empty examples."""
    diabetes = tabular["diabetes"]
    response = regress(stub, "diabetes", [example_pb2.Example(), example_pb2.Example()],
                       context=example(x=diabetes["x"][1]))
    values = [r.value for r in response.result.regressions]
    assert len(values) == 2
    assert all(abs(v - diabetes["predict"][1]) < 1e-3 for v in values), values

    cancer = tabular["breast_cancer"]
    response = classify(stub, "breast_cancer", [example_pb2.Example()], context=example(x=cancer["x"][3]))
    [classification] = response.result.classifications
    by_label = {c.label: c.score for c in classification.classes}
    for label, probability in zip(cancer["labels"], cancer["predict_proba"][3]):
        assert abs(by_label[label] - probability) < 1e-4, by_label


def test_classify_or_regress_without_the_task_is_refused(stub, tabular):
    assert code_of(classify, stub, "diabetes", [example(x=tabular["diabetes"]["x"][0])]) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(regress, stub, "breast_cancer", [example(x=tabular["breast_cancer"]["x"][0])]) \
        == grpc.StatusCode.INVALID_ARGUMENT
    # Features that do not fit: a row of the wrong length, an unknown feature, no examples.
    assert code_of(classify, stub, "breast_cancer", [example(x=tabular["breast_cancer"]["x"][0][:5])]) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(classify, stub, "breast_cancer", [example(y=tabular["breast_cancer"]["x"][0])]) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(classify, stub, "breast_cancer", []) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(classify, stub, "nope", [example(x=[0.0])]) == grpc.StatusCode.NOT_FOUND
    # A bad image in a bytes feature.
    assert code_of(classify, stub, "mobilenet_v2", [example(input=b"not an image")]) \
        == grpc.StatusCode.INVALID_ARGUMENT
    # Still serving.
    assert len(classify(stub, "breast_cancer", [example(x=tabular["breast_cancer"]["x"][0])])
               .result.classifications) == 1
