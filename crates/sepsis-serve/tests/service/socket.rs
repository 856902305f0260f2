//! The server on a real socket on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use sepsis_serve::AppState;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::common::*;

pub struct Server {
    pub addr: SocketAddr,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), sepsis_serve::ServeError>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Asks the server to stop and waits until it has.
    pub async fn shut_down(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

/// Starts the server on a free port of 127.0.0.1.
pub async fn spawn_server(state: AppState) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(sepsis_serve::serve(listener, state, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub async fn post_predict(client: &reqwest::Client, server: &Server, body: &Value) -> (u16, Value) {
    let response = client
        .post(server.url("/predict"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn server_answers_on_socket() {
    let server = spawn_server(state_with(Some(1)).await).await;
    let client = client();
    let health = client.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));

    let (status, body) = post_predict(&client, &server, &json!({"rows": [valid_row()]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"]["version"], 1);
    // Each result also names its model version and threshold.
    let result = &body["results"][0];
    assert_eq!(result["model_version"], 1);
    assert_eq!(result["threshold"], body["alert_rule"]["threshold"]);
    assert!(result["threshold"].is_number(), "{body}");

    // A body over the limit, sent with its Content-Length, gets JSON too.
    let big = vec![b' '; 2 << 20];
    let response = client
        .post(server.url("/predict"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"], "body_too_large");
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_starts_without_production() {
    let registry = registry_with(None).await;
    let state = AppState::new(
        registry.clone(),
        fixture().await.schema.clone(),
        settings(),
        sepsis_serve::TrainSettings::disabled(),
    );
    let server = spawn_server(state).await;
    let client = client();
    let ready = client.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    // The watcher loads production once it appears.
    registry.promote(2, None, "test").await.unwrap();
    let mut status = 0;
    for _ in 0..100 {
        status = client
            .get(server.url("/ready"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200);
    server.shut_down().await;
}

/// Shutting down lets a request in flight finish.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_requests_in_flight() {
    let server = spawn_server(state_with(Some(1)).await).await;
    let client = client();
    let rows: Vec<Value> = (0..1000).map(|_| valid_row()).collect();
    let body = json!({"rows": rows, "explain": true, "top_k": 20});
    let request = {
        let client = client.clone();
        let url = server.url("/predict");
        tokio::spawn(async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = server.addr;
    server.shut_down().await;
    assert_eq!(request.await.unwrap().unwrap(), 200);
    // And the port no longer answers.
    assert!(client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .is_err());
}
