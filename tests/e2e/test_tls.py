"""TLS on both listeners (`--tls-cert`, `--tls-key`, `--tls-client-ca`; docs/security.md) with real
clients: requests with a CA bundle, tritonclient over HTTPS and over gRPC with root certificates;
mutual TLS accepts a client certificate of the CA and refuses a client without one; a certificate
replaced on disk is served to the next connection while an open one keeps going; files that
cannot be used stop start-up, named. Certificates come from a throw-away CA (trustme)."""
import os
import time

import numpy as np
import pytest
import requests
import trustme
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import FIXTURE_MODELS, Server, wait_until

TIMEOUT = 30
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}


class Pki:
    """A CA, a server certificate for localhost and 127.0.0.1 and a client certificate, as
    files in `directory`."""

    def __init__(self, directory, name="ca"):
        self.ca = trustme.CA()
        self.ca_file = directory / f"{name}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        server = self.ca.issue_cert("localhost", "127.0.0.1")
        self.cert, self.key = directory / f"{name}-server.pem", directory / f"{name}-server.key"
        server.cert_chain_pems[0].write_to_path(str(self.cert))
        for pem in server.cert_chain_pems[1:]:
            pem.write_to_path(str(self.cert), append=True)
        server.private_key_pem.write_to_path(str(self.key))
        client = self.ca.issue_cert("client.example")
        self.client_cert, self.client_key = directory / f"{name}-client.pem", directory / f"{name}-client.key"
        client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        client.private_key_pem.write_to_path(str(self.client_key))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(pki):
    server = Server(FIXTURE_MODELS, "--tls-cert", str(pki.cert), "--tls-key", str(pki.key))
    yield server
    server.stop()


def test_rest_over_tls_with_requests(server, pki):
    assert server.url.startswith("https://")
    assert requests.get(f"{server.url}/v2/health/ready", verify=pki.ca_file, timeout=TIMEOUT).status_code == 200
    answer = requests.post(f"{server.url}/v2/models/half_plus_two/infer", json=V2_BODY, verify=pki.ca_file,
                           timeout=TIMEOUT)
    assert answer.json()["outputs"][0]["data"] == [2.5, 3.0, 3.5]
    tf = requests.post(f"{server.url}/v1/models/half_plus_two:predict", json={"instances": [[1, 2, 3]]},
                       verify=pki.ca_file, timeout=TIMEOUT)
    assert tf.json() == {"predictions": [[2.5, 3.0, 3.5]]}
    # Not trusted without the CA, and no plain HTTP on the TLS port.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{server.url}/v2/health/ready", timeout=TIMEOUT)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(server.url.replace("https://", "http://") + "/v2/health/ready", timeout=TIMEOUT)


def test_tritonclient_over_https(server, pki):
    with httpclient.InferenceServerClient(server.url.removeprefix("https://"), ssl=True,
                                          ssl_options={"ca_certs": str(pki.ca_file)}) as triton:
        assert triton.is_server_ready()
        x = httpclient.InferInput("x", [1, 3], "FP32")
        x.set_data_from_numpy(np.array([[1, 2, 3]], dtype=np.float32), binary_data=True)
        assert triton.infer("half_plus_two", [x]).as_numpy("y").tolist() == [[2.5, 3.0, 3.5]]


def grpc_infer(address, **tls):
    with grpcclient.InferenceServerClient(address, ssl=True, **tls) as triton:
        x = grpcclient.InferInput("x", [1, 3], "FP32")
        x.set_data_from_numpy(np.array([[1, 2, 3]], dtype=np.float32))
        return triton.infer("half_plus_two", [x], client_timeout=TIMEOUT).as_numpy("y").tolist()


def test_tritonclient_over_grpc_with_tls(server, pki):
    assert grpc_infer(server.grpc, root_certificates=str(pki.ca_file)) == [[2.5, 3.0, 3.5]]
    with grpcclient.InferenceServerClient(server.grpc) as plain:
        with pytest.raises(Exception):
            plain.is_server_ready(client_timeout=5)


def test_mutual_tls_needs_a_client_certificate_of_the_ca(tmp_path, pki):
    server = Server(FIXTURE_MODELS, "--tls-cert", str(pki.cert), "--tls-key", str(pki.key),
                    "--tls-client-ca", str(pki.ca_file))
    try:
        mine = (str(pki.client_cert), str(pki.client_key))
        ok = requests.get(f"{server.url}/v2/health/ready", verify=pki.ca_file, cert=mine, timeout=TIMEOUT)
        assert ok.status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{server.url}/v2/health/ready", verify=pki.ca_file, timeout=TIMEOUT)
        # A certificate from another CA is refused too.
        stranger = Pki(tmp_path, "stranger")
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{server.url}/v2/health/ready", verify=pki.ca_file, timeout=TIMEOUT,
                         cert=(str(stranger.client_cert), str(stranger.client_key)))
        assert grpc_infer(server.grpc, root_certificates=str(pki.ca_file), private_key=str(pki.client_key),
                          certificate_chain=str(pki.client_cert)) == [[2.5, 3.0, 3.5]]
        with pytest.raises(Exception):
            grpc_infer(server.grpc, root_certificates=str(pki.ca_file))
    finally:
        server.stop()


def test_a_replaced_certificate_is_served_to_the_next_connection(tmp_path):
    first = Pki(tmp_path, "first")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    server = Server(FIXTURE_MODELS, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        url = f"{server.url}/v2/health/ready"
        # (verify on each call: a session's own verify loses to REQUESTS_CA_BUNDLE.)
        kept = requests.Session()
        assert kept.get(url, verify=first.ca_file, timeout=TIMEOUT).status_code == 200
        second = Pki(tmp_path, "second")
        key.write_bytes(second.key.read_bytes())
        cert.write_bytes(second.cert.read_bytes())
        later = time.time() + 2
        for path in (cert, key):
            os.utime(path, (later, later))

        def trusted_by_second():
            try:
                return requests.get(url, verify=second.ca_file, timeout=TIMEOUT).status_code == 200
            except requests.exceptions.SSLError:
                return False

        wait_until(trusted_by_second, "the new certificate to be served")
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, verify=first.ca_file, timeout=TIMEOUT)
        # The connection opened before the change was not dropped.
        assert kept.get(url, verify=first.ca_file, timeout=TIMEOUT).status_code == 200
        kept.close()
        # A replacement that does not load keeps the certificate in force.
        key.write_text("not a key")
        later += 2
        os.utime(key, (later, later))
        wait_until(lambda: any("TLS certificate not replaced" in line for line in server.log) or
                   requests.get(url, verify=second.ca_file, timeout=TIMEOUT) is None,
                   "the broken key to be noticed")
        assert requests.get(url, verify=second.ca_file, timeout=TIMEOUT).status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize("broken", ["missing cert", "missing key", "wrong key", "not pem"])
def test_files_that_cannot_be_used_stop_start_up(tmp_path, pki, broken):
    cert, key = str(pki.cert), str(pki.key)
    if broken == "missing cert":
        cert = str(tmp_path / "nope.pem")
    elif broken == "missing key":
        key = str(tmp_path / "nope.key")
    elif broken == "wrong key":
        key = str(Pki(tmp_path, "other").key)
    else:
        (tmp_path / "junk.pem").write_text("hello")
        cert = str(tmp_path / "junk.pem")
    with pytest.raises(BaseException) as failed:
        Server(FIXTURE_MODELS, "--tls-cert", cert, "--tls-key", key)
    named = {"missing cert": cert, "missing key": key, "wrong key": key, "not pem": cert}[broken]
    assert named in str(failed.value), str(failed.value)[-2000:]
