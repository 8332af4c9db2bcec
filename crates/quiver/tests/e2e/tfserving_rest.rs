//! End-to-end tests of the TensorFlow Serving REST API: a real server on `127.0.0.1:0` serving the
//! fixture models, driven over real HTTP.

use quiver::config::ServeConfig;
use quiver::server::{RunningServer, start};
use quiver_test_support::{TempRepository, fixture_model, fixtures_repository};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn serve(
    repository: &std::path::Path,
    tweak: impl FnOnce(&mut ServeConfig),
) -> RunningServer {
    let mut config = ServeConfig::new(repository);
    config.http.host = "127.0.0.1".parse().unwrap();
    config.http.rest_port = 0;
    config.grpc.grpc_port = 0;
    // No metadata store: these tests share one process, and the default store is a file in the
    // user's data directory (the store's own tests: crates/metadata, tests/e2e).
    config.metadata.metadata_store = Some("none".into());
    tweak(&mut config);
    start(&config, std::future::pending()).await.unwrap()
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(server: &RunningServer) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{}", server.rest_addr),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{path}: the answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: impl Into<Vec<u8>>) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body.into()))
            .await
    }

    /// Posts and keeps the answer as text (serde_json cannot hold TF Serving's `NaN`).
    async fn post_raw(&self, path: &str, body: &str) -> (StatusCode, String) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post(path, serde_json::to_vec(body).unwrap()).await
    }

    /// Asserts a predict answers 200 and returns its body.
    async fn predict(&self, model: &str, body: &Value) -> Value {
        let (status, value) = self
            .post_json(&format!("/v1/models/{model}:predict"), body)
            .await;
        assert_eq!(status, StatusCode::OK, "{model}: {value}");
        value
    }

    /// Asserts the request fails with `want` and a `{"error": "…"}` body mentioning `needle`.
    async fn expect_error(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        want: StatusCode,
        needle: &str,
    ) {
        let (status, value) = self.send(method, path, body).await;
        assert_eq!(status, want, "{path}: {value}");
        let object = value
            .as_object()
            .unwrap_or_else(|| panic!("{path}: error is not an object: {value}"));
        assert_eq!(object.len(), 1, "{path}: error has extra fields: {value}");
        let message = object["error"].as_str().unwrap();
        assert!(
            message.to_lowercase().contains(&needle.to_lowercase()),
            "{path}: error {message:?} does not mention {needle:?}"
        );
    }
}

#[tokio::test]
async fn predicts_float_model_in_both_formats() {
    let server = serve(&fixtures_repository(), |_| {}).await;
    let client = Client::new(&server);

    let rows = client
        .predict(
            "half_plus_two",
            &json!({"instances": [[1.0, 2.0, 3.0], [-2.0, 0.0, 10.0]]}),
        )
        .await;
    assert_eq!(
        rows,
        json!({"predictions": [[2.5, 3.0, 3.5], [1.0, 2.0, 7.0]]})
    );

    let columns = client
        .predict(
            "half_plus_two",
            &json!({"inputs": [[1.0, 2.0, 3.0]], "signature_name": "serving_default"}),
        )
        .await;
    assert_eq!(columns, json!({"outputs": [[2.5, 3.0, 3.5]]}));

    let named = client
        .predict("half_plus_two", &json!({"inputs": {"x": [[4, 6, 8]]}}))
        .await;
    assert_eq!(named, json!({"outputs": [[4.0, 5.0, 6.0]]}));

    let named_rows = client
        .predict(
            "half_plus_two",
            &json!({"instances": [{"x": [0, 0, 0]}, {"x": [2, 2, 2]}]}),
        )
        .await;
    assert_eq!(
        named_rows,
        json!({"predictions": [[2.0, 2.0, 2.0], [3.0, 3.0, 3.0]]})
    );

    // The explicit version route answers the same.
    let (status, versioned) = client
        .post_json(
            "/v1/models/half_plus_two/versions/1:predict",
            &json!({"instances": [[0, 2, 4]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(versioned, json!({"predictions": [[2.0, 3.0, 4.0]]}));

    // NaN and Infinity, as TF Serving reads and writes them.
    let (status, body) = client
        .post_raw(
            "/v1/models/half_plus_two:predict",
            r#"{"instances": [[NaN, Infinity, -Infinity]]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"predictions":[[NaN,Infinity,-Infinity]]}"#);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn predicts_int_model_in_both_formats() {
    let server = serve(&fixtures_repository(), |_| {}).await;
    let client = Client::new(&server);
    let rows = client
        .predict(
            "int_affine",
            &json!({"instances": [[1, 2], [-5, 9_007_199_254_740_i64]]}),
        )
        .await;
    assert_eq!(
        rows,
        json!({"predictions": [[2, 5], [-16, 27021597764219_i64]]})
    );
    let columns = client
        .predict("int_affine", &json!({"inputs": {"a": [[0, 1]]}}))
        .await;
    assert_eq!(columns, json!({"outputs": [[-1, 2]]}));
    // Integer outputs stay integers on the wire.
    assert!(columns["outputs"][0][0].is_i64());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn predicts_multi_input_multi_output_model() {
    let server = serve(&fixtures_repository(), |_| {}).await;
    let client = Client::new(&server);
    let rows = client
        .predict(
            "multi_io",
            &json!({"instances": [{"a": [1.5, 2.0], "b": 3}, {"a": [-1.0, 0.25], "b": -4}]}),
        )
        .await;
    assert_eq!(
        rows,
        json!({"predictions": [
            {"sum": 3.5, "b_doubled": 6, "positive": true},
            {"sum": -0.75, "b_doubled": -8, "positive": false},
        ]})
    );
    let columns = client
        .predict(
            "multi_io",
            &json!({"inputs": {"a": [[1.0, 1.0], [2.0, 2.0]], "b": [0, 7]}}),
        )
        .await;
    assert_eq!(
        columns,
        json!({"outputs": {"sum": [2.0, 4.0], "b_doubled": [0, 14], "positive": [false, true]}})
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn status_and_metadata_match_tf_serving() {
    let server = serve(&fixtures_repository(), |_| {}).await;
    let client = Client::new(&server);

    for path in ["/v1/models/multi_io", "/v1/models/multi_io/versions/1"] {
        let (status, body) = client.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            body,
            json!({"model_version_status": [{
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }]}),
            "{path}"
        );
    }

    for path in [
        "/v1/models/multi_io/metadata",
        "/v1/models/multi_io/versions/1/metadata",
    ] {
        let (status, body) = client.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body["model_spec"]["name"], "multi_io");
        assert_eq!(body["model_spec"]["version"], "1");
        assert_eq!(body["model_spec"]["signature_name"], "");
        let signature = &body["metadata"]["signature_def"]["signature_def"]["serving_default"];
        assert_eq!(signature["method_name"], "tensorflow/serving/predict");
        let dims = |v: &Value| -> Vec<String> {
            v["tensor_shape"]["dim"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["size"].as_str().unwrap().to_owned())
                .collect()
        };
        let a = &signature["inputs"]["a"];
        assert_eq!(a["name"], "a");
        assert_eq!(a["dtype"], "DT_FLOAT");
        assert_eq!(dims(a), ["-1", "2"]);
        assert_eq!(a["tensor_shape"]["unknown_rank"], false);
        let b = &signature["inputs"]["b"];
        assert_eq!(b["dtype"], "DT_INT32");
        assert_eq!(dims(b), ["-1"]);
        assert_eq!(signature["inputs"].as_object().unwrap().len(), 2);
        let outputs = signature["outputs"].as_object().unwrap();
        assert_eq!(outputs.len(), 3);
        assert_eq!(outputs["sum"]["dtype"], "DT_FLOAT");
        assert_eq!(outputs["b_doubled"]["dtype"], "DT_INT32");
        assert_eq!(outputs["positive"]["dtype"], "DT_BOOL");
        assert_eq!(dims(&outputs["positive"]), ["-1"]);
    }
    let (_, int_meta) = client.get("/v1/models/int_affine/metadata").await;
    assert_eq!(
        int_meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["a"]["dtype"],
        "DT_INT64"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn serves_the_highest_version() {
    let repo = TempRepository::new().unwrap();
    repo.add("versioned", 1, &fixture_model("half_plus_two"))
        .unwrap();
    repo.add("versioned", 3, &fixture_model("half_plus_two"))
        .unwrap();
    repo.write("versioned/notes.txt", b"stray file").unwrap();
    repo.write("versioned/latest/README", b"non-numeric version dir")
        .unwrap();
    std::fs::create_dir_all(repo.path().join("versioned/7")).unwrap();
    let server = serve(repo.path(), |_| {}).await;
    let client = Client::new(&server);

    let (status, body) = client.get("/v1/models/versioned").await;
    assert_eq!(status, StatusCode::OK);
    let versions = body["model_version_status"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{body}");
    assert_eq!(versions[0]["version"], "3");
    assert_eq!(versions[0]["state"], "AVAILABLE");

    let (status, _) = client
        .post_json(
            "/v1/models/versioned/versions/3:predict",
            &json!({"instances": [[0, 0, 0]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, meta) = client.get("/v1/models/versioned/metadata").await;
    assert_eq!(meta["model_spec"]["version"], "3");
    client
        .expect_error(
            reqwest::Method::POST,
            "/v1/models/versioned/versions/1:predict",
            Some(br#"{"instances": [[0, 0, 0]]}"#.to_vec()),
            StatusCode::NOT_FOUND,
            "version",
        )
        .await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_broken_model_is_reported_and_the_others_serve() {
    let repo = TempRepository::new().unwrap();
    repo.add("good", 1, &fixture_model("half_plus_two"))
        .unwrap();
    repo.write("broken/1/model.onnx", b"this is not an onnx file")
        .unwrap();
    let server = serve(repo.path(), |_| {}).await;
    let client = Client::new(&server);

    let (status, body) = client.get("/v1/models/broken").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let version = &body["model_version_status"][0];
    assert_eq!(version["version"], "1");
    assert_eq!(version["state"], "END");
    assert_ne!(version["status"]["error_code"], "OK");
    assert!(
        !version["status"]["error_message"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    client
        .expect_error(
            reqwest::Method::POST,
            "/v1/models/broken:predict",
            Some(br#"{"instances": [[0, 0, 0]]}"#.to_vec()),
            StatusCode::NOT_FOUND,
            "broken",
        )
        .await;
    client
        .predict("good", &json!({"instances": [[0, 0, 0]]}))
        .await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_client_mistake_gets_a_clear_error() {
    use reqwest::Method;
    let server = serve(&fixtures_repository(), |c| {
        c.http.max_body_bytes = 1024 * 1024
    })
    .await;
    let client = Client::new(&server);
    let predict = "/v1/models/half_plus_two:predict";
    let bad = StatusCode::BAD_REQUEST;
    let post = |body: &str| Some(body.as_bytes().to_vec());

    let cases: Vec<(&str, Option<Vec<u8>>, StatusCode, &str)> = vec![
        (predict, post("{\"instances\": [[1, 2, 3]"), bad, "json"),
        (predict, post("not json at all"), bad, "json"),
        (predict, post(""), bad, "json"),
        (predict, post("{\"instances\": [[1, 2]]}"), bad, "shape"),
        (
            predict,
            post("{\"instances\": [[1, 2, 3], [4, 5]]}"),
            bad,
            "rectangular",
        ),
        (
            predict,
            post("{\"instances\": [[\"a\", \"b\", \"c\"]]}"),
            bad,
            "x",
        ),
        (
            predict,
            post("{\"instances\": [[true, false, true]]}"),
            bad,
            "x",
        ),
        (
            predict,
            post("{\"inputs\": {\"nope\": [[1, 2, 3]]}}"),
            bad,
            "nope",
        ),
        (
            predict,
            post("{\"instances\": [{\"x\": [1, 2, 3], \"extra\": 1}]}"),
            bad,
            "extra",
        ),
        (
            predict,
            post("{\"instances\": [[1, 2, 3]], \"inputs\": [[1, 2, 3]]}"),
            bad,
            "instances",
        ),
        (predict, post("{\"instances\": []}"), bad, "empty"),
        (predict, post("{}"), bad, "instances"),
        (
            predict,
            post("{\"instances\": [[1, 2, 3]], \"signature_name\": \"other\"}"),
            bad,
            "signature",
        ),
        (
            "/v1/models/int_affine:predict",
            post("{\"instances\": [[1.5, 2]]}"),
            bad,
            "a",
        ),
        (
            "/v1/models/int_affine:predict",
            post("{\"instances\": [[1e30, 2]]}"),
            bad,
            "a",
        ),
        (
            "/v1/models/multi_io:predict",
            post("{\"inputs\": {\"a\": [[1, 2], [3, 4]], \"b\": [1, 2, 3]}}"),
            bad,
            "dimension",
        ),
        (
            "/v1/models/multi_io:predict",
            post("{\"inputs\": {\"a\": [[1, 2]], \"b\": [3000000000]}}"),
            bad,
            "b",
        ),
        (
            "/v1/models/multi_io:predict",
            post("{\"inputs\": {\"a\": [[1, 2]]}}"),
            bad,
            "b",
        ),
        (
            "/v1/models/nope:predict",
            post("{\"instances\": [[1, 2, 3]]}"),
            StatusCode::NOT_FOUND,
            "nope",
        ),
        ("/v1/models/nope", None, StatusCode::NOT_FOUND, "nope"),
        (
            "/v1/models/nope/metadata",
            None,
            StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            "/v1/models/half_plus_two/versions/9",
            None,
            StatusCode::NOT_FOUND,
            "9",
        ),
        (
            "/v1/models/half_plus_two/versions/9:predict",
            post("{\"instances\": [[1, 2, 3]]}"),
            StatusCode::NOT_FOUND,
            "9",
        ),
        (
            "/v1/models/half_plus_two:explode",
            post("{}"),
            StatusCode::NOT_FOUND,
            "path",
        ),
        ("/v2/nothing/here", None, StatusCode::NOT_FOUND, "route"),
        ("/", None, StatusCode::NOT_FOUND, "route"),
        // What the shape does not imply: three outputs; a score per class (3 a row) asked for
        // a regression.
        (
            "/v1/models/multi_io:classify",
            post("{\"examples\": []}"),
            bad,
            "no classification signature",
        ),
        (
            "/v1/models/half_plus_two:regress",
            post("{\"examples\": []}"),
            bad,
            "makes it a classification",
        ),
        (
            "/v1/models/half_plus_two_tf:classify",
            post("{\"examples\": []}"),
            bad,
            "makes it a regression",
        ),
    ];
    for (path, body, want, needle) in cases {
        let method = if body.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        client.expect_error(method, path, body, want, needle).await;
    }

    // Wrong methods.
    client
        .expect_error(
            Method::GET,
            predict,
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "POST",
        )
        .await;
    client
        .expect_error(
            Method::POST,
            "/v1/models/half_plus_two",
            post("{}"),
            StatusCode::METHOD_NOT_ALLOWED,
            "GET",
        )
        .await;
    client
        .expect_error(
            Method::DELETE,
            "/v1/models/half_plus_two/metadata",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "GET",
        )
        .await;

    // Over the body limit (1 MiB here).
    let mut big = String::from("{\"instances\": [");
    while big.len() < 1100 * 1024 {
        big.push_str("[1.0, 2.0, 3.0],");
    }
    big.push_str("[1.0, 2.0, 3.0]]}");
    client
        .expect_error(
            Method::POST,
            predict,
            Some(big.into_bytes()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "--max-body-bytes",
        )
        .await;

    // Deep nesting is refused without recursion (a stack overflow would kill the server).
    let depth = 150_000;
    let deep = format!(
        "{{\"instances\": {}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    client
        .expect_error(Method::POST, predict, Some(deep.into_bytes()), bad, "deep")
        .await;
    let deep_objects = format!("{}{}", "{\"a\":".repeat(20_000), "}".repeat(20_000));
    client
        .expect_error(
            Method::POST,
            predict,
            Some(deep_objects.into_bytes()),
            bad,
            "deep",
        )
        .await;

    // After all that, the server still answers.
    let ok = client
        .predict("half_plus_two", &json!({"instances": [[2, 4, 6]]}))
        .await;
    assert_eq!(ok, json!({"predictions": [[3.0, 4.0, 5.0]]}));
    server.shutdown().await.unwrap();
}
