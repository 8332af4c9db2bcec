"""The server and byte strings of the BYTES / DT_STRING tests (test_bytes.py, tritonclient venv;
tfserving/test_tfserving_bytes.py, TF Serving stubs venv), so it needs nothing beyond the standard
library and conftest.

One repository serves the fixture `echo_bytes` (a string input `text` straight to the output
`echo`) twice: `echo_tract` on tract and `echo_onnxruntime` on ONNX Runtime, each chosen by its
config.toml.
"""
import os

import pytest

from conftest import FIXTURE_MODELS, Server

ENGINES = ("tract", "onnxruntime")

# Elements that trip up servers holding strings as C strings or as text.
CASES = {
    "empty": b"",
    "nul inside": b"a\0b",
    "nul at the end": b"ab\0",
    "nul alone": b"\0",
    "not utf-8": b"\xff\xfe",
    "lone continuation byte": b"a\x80b",
    "overlong nul": b"\xc0\x80",
    "multi-byte utf-8": "h\u00e9llo \u732b \U0001f600".encode(),
    "long utf-8": ("\u732b\0a" * 100_000).encode(),
    "long, every byte": bytes(range(256)) * 4096,
}


def is_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


UTF8 = {name: b for name, b in CASES.items() if is_utf8(b)}
NOT_UTF8 = {name: b for name, b in CASES.items() if not is_utf8(b)}


def model(engine):
    return f"echo_{engine}"


def start_server(repository):
    """The server on `repository` with both models; ONNX Runtime's library when there is one
    (without it only `echo_tract` loads, and the ONNX Runtime tests skip)."""
    source = FIXTURE_MODELS / "echo_bytes" / "1" / "model.onnx"
    for engine in ENGINES:
        (repository / model(engine) / "1").mkdir(parents=True)
        (repository / model(engine) / "1" / "model.onnx").symlink_to(source)
        (repository / model(engine) / "config.toml").write_text(f'engine = "{engine}"\n')
    library = os.environ.get("QUIVER_ONNXRUNTIME_LIB", "")
    if library and os.path.exists(library):
        return Server(repository, "--onnxruntime-lib", library, onnxruntime=True)
    return Server(repository)


@pytest.fixture(params=ENGINES)
def engine(request):
    """Each engine in turn; ONNX Runtime only when its library is there (else a loud skip)."""
    if request.param == "onnxruntime":
        request.getfixturevalue("onnxruntime_library")
    return request.param
