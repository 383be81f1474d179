//! The OpenAPI document stays true to the router: every documented route is served.

use crate::support::{data_dir, Server};

#[tokio::test]
async fn every_documented_route_is_served() {
    let dir = data_dir();
    let server = Server::start(dir.path(), &[]).await;
    let (status, document) = server.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 7, "the document lists the routes");
    for (path, methods) in paths {
        for method in methods.as_object().expect("methods").keys() {
            let concrete = path.replace(['{', '}'], "");
            let url = format!("{}{concrete}", server.url);
            let request = match method.as_str() {
                "get" => server.http.get(&url),
                "post" => server
                    .http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body("{}"),
                "put" => server
                    .http
                    .put(&url)
                    .header("content-type", "application/json")
                    .body("{}"),
                "delete" => server.http.delete(&url),
                other => panic!("unexpected method {other} for {path}"),
            };
            let response = request
                .timeout(std::time::Duration::from_secs(10))
                .send()
                .await;
            // An SSE route may keep the connection open; answering at all is enough there.
            let Ok(response) = response else { continue };
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let code = body["error"]["code"].as_str().unwrap_or("");
            assert!(
                code != "route_not_found" && code != "method_not_allowed" && status != 405,
                "{method} {path} is documented but not served ({status} {code})"
            );
        }
    }
}
