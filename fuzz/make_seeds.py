"""Writes the seed corpus under fuzz/corpus/: one small valid input of each shape every target
reads, so the fuzzers start from real requests instead of rediscovering the formats.

The tritonclient and TF Serving stubs need different protobuf releases, so run it in both test
virtualenvs (with Pillow added); each run writes the seeds its modules can make:
    target/venv/bin/python fuzz/make_seeds.py
    target/venv-tfserving/bin/python fuzz/make_seeds.py
The corpus is committed; this script is here to show where each seed came from.
"""

import io
import json
import pathlib
import struct

import numpy as np

ROOT = pathlib.Path(__file__).parent / "corpus"
REPO = pathlib.Path(__file__).parent.parent


def write(target, name, data):
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def v2_json():
    write("v2_json", "fp32", json.dumps({
        "id": "1",
        "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3.5, -4e3]]}],
        "outputs": [{"name": "y", "parameters": {"binary_data": False}}],
    }))
    write("v2_json", "bytes_int", json.dumps({
        "inputs": [
            {"name": "t", "shape": [2], "datatype": "BYTES", "data": ["a", "\u00e9\\n"]},
            {"name": "i", "shape": [1, 3], "datatype": "INT64", "data": [1, -2, 9223372036854775807]},
            {"name": "b", "shape": [2], "datatype": "BOOL", "data": [True, False]},
            {"name": "h", "shape": [1], "datatype": "FP16", "data": [0.5]},
        ],
        "parameters": {"binary_data_output": True, "timeout": 1000},
    }))


def v2_binary():
    header = json.dumps({
        "inputs": [
            {"name": "x", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
            {"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 11}},
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }).encode()
    binary = struct.pack("<2f", 1.0, 2.0) + struct.pack("<I", 3) + b"abc" + struct.pack("<I", 0)
    write("v2_binary", "fp32_bytes", struct.pack("<H", len(header)) + header + binary)


def tfserving_json():
    write("tfserving_json", "instances", json.dumps({"instances": [[1, 2, 3, 4], [5, 6, 7, 8]]}))
    write("tfserving_json", "named_instances", json.dumps({
        "signature_name": "serving_default",
        "instances": [{"x": [1, 2, 3, 4], "ids": [1, 2], "mask": True, "half": [1, 2],
                       "text": "hi", "image": {"b64": "aGVsbG8="}}],
    }))
    write("tfserving_json", "inputs", json.dumps({
        "inputs": {"x": [[0.5, 1, 2, 3]], "ids": [[7]], "text": [{"b64": "AAE="}]},
    }))


def tfserving_examples_json():
    write("tfserving_examples_json", "classify", json.dumps({
        "signature_name": "classification",
        "context": {"lang": "en"},
        "examples": [{"f": [1.5, 2.0], "n": 3, "s": {"b64": "aGk="}}, {"f": 0.1, "tags": ["a", "b"]}],
    }))


def v2_proto():
    from tritonclient.grpc import service_pb2

    r = service_pb2.ModelInferRequest(model_name="m", model_version="1", id="x")
    t = r.inputs.add(name="x", datatype="FP32", shape=[1, 2])
    t.contents.fp32_contents.extend([1.0, 2.0])
    t = r.inputs.add(name="s", datatype="BYTES", shape=[1])
    t.contents.bytes_contents.append(b"hello")
    write("v2_proto", "contents", r.SerializeToString())
    r = service_pb2.ModelInferRequest(model_name="m")
    r.inputs.add(name="x", datatype="FP16", shape=[2])
    r.inputs.add(name="i", datatype="INT8", shape=[1, 3])
    r.raw_input_contents.extend([np.array([1, 2], "<f2").tobytes(), bytes([1, 2, 255])])
    write("v2_proto", "raw", r.SerializeToString())


def tensor(dtype, dims, **values):
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **values)


def tfserving_proto():
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2

    r = predict_pb2.PredictRequest()
    r.model_spec.name = "m"
    r.inputs["x"].CopyFrom(tensor(types_pb2.DT_FLOAT, [1, 2], float_val=[1.0, 2.0]))
    r.inputs["s"].CopyFrom(tensor(types_pb2.DT_STRING, [2], string_val=[b"a", b"b"]))
    r.inputs["h"].CopyFrom(tensor(types_pb2.DT_HALF, [1], half_val=[0x3C00]))
    write("tfserving_proto", "typed", r.SerializeToString())
    r = predict_pb2.PredictRequest()
    r.inputs["c"].CopyFrom(tensor(types_pb2.DT_INT32, [2, 2], tensor_content=np.arange(4, dtype="<i4").tobytes()))
    r.inputs["b"].CopyFrom(tensor(types_pb2.DT_BOOL, [1], bool_val=[True]))
    write("tfserving_proto", "tensor_content", r.SerializeToString())


def tf_example():
    from tensorflow.core.example import example_pb2
    from tensorflow_serving.apis import classification_pb2

    def example(**features):
        e = example_pb2.Example()
        for k, v in features.items():
            f = e.features.feature[k]
            if isinstance(v[0], float):
                f.float_list.value.extend(v)
            elif isinstance(v[0], int):
                f.int64_list.value.extend(v)
            else:
                f.bytes_list.value.extend(v)
        return e

    r = classification_pb2.ClassificationRequest()
    r.model_spec.name = "m"
    r.input.example_list.examples.extend([example(x=[1.0, 2.0], n=[3]), example(s=[b"a"])])
    write("tf_example", "list", r.SerializeToString())
    r = classification_pb2.ClassificationRequest()
    r.input.example_list_with_context.context.CopyFrom(example(lang=[b"en"]))
    r.input.example_list_with_context.examples.append(example(x=[0.5]))
    write("tf_example", "with_context", r.SerializeToString())


def image():
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    for fmt, mode in [("PNG", "RGB"), ("JPEG", "RGB"), ("WEBP", "RGB"), ("BMP", "RGB"), ("GIF", "P"), ("PNG", "LA")]:
        img = Image.fromarray(pixels).convert(mode)
        buf = io.BytesIO()
        img.save(buf, fmt)
        write("image", f"{fmt.lower()}_{mode.lower()}", buf.getvalue())


def config_readers():
    for i, path in enumerate(sorted(REPO.glob("examples/configs/*/config.toml"))):
        write("config_readers", f"toml_{i}", b"\x00" + path.read_bytes())
    write("config_readers", "pbtxt", b"\x01" + b'''name: "m"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ -1, 10 ] } ]
version_policy: { specific: { versions: [ 1, 3 ] } }
dynamic_batching { max_queue_delay_microseconds: 100 preferred_batch_size: [ 4, 8 ] }
instance_group [ { count: 2 kind: KIND_CPU } ]
''')
    write("config_readers", "json", b"\x02" + json.dumps({
        "name": "m", "max_batch_size": 4,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}],
        "version_policy": {"latest": {"num_versions": 2}},
    }).encode())
    write("config_readers", "model_config_file", b"\x03" + b'''model_config_list {
  config {
    name: "m"
    base_path: "/models/m"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
  }
}
''')


for f in [v2_json, v2_binary, tfserving_json, tfserving_examples_json, v2_proto, tfserving_proto,
          tf_example, image, config_readers]:
    try:
        f()
    except ImportError as e:
        print(f"{f.__name__}: skipped here ({e})")
