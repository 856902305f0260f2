//! Promoting a new version while requests flow: no request fails, and once
//! a client has seen the new version it never sees the old one again.

use std::time::Duration;

use serde_json::json;

use crate::common::*;
use crate::socket::{client, post_predict, spawn_server};

const CLIENTS: usize = 4;

#[tokio::test(flavor = "multi_thread")]
async fn promotion_swaps_model_without_failures() {
    let state = state_with(Some(1)).await;
    let registry = state.registry().clone();
    let server = spawn_server(state).await;
    let url = server.url("/predict");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let stop = stop.clone();
        let url = url.clone();
        clients.push(tokio::spawn(async move {
            let client = client();
            let body = json!({"rows": [valid_row()]}).to_string();
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("the request is answered");
                assert_eq!(response.status(), 200);
                let body: serde_json::Value =
                    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
                seen.push(body["model"]["version"].as_u64().unwrap());
            }
            seen
        }));
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    registry.promote(2, Some(1), "hot swap test").await.unwrap();
    // The watcher polls every 100 ms; wait until a fresh request sees v2.
    let probe = client();
    let mut swapped = false;
    for _ in 0..100 {
        let (status, body) = post_predict(&probe, &server, &json!({"rows": [valid_row()]})).await;
        assert_eq!(status, 200);
        if body["model"]["version"] == 2 {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(swapped, "the new version is served");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    for client in clients {
        let seen = client.await.unwrap();
        assert!(seen.len() > 5, "only {} requests", seen.len());
        assert_eq!(seen.first(), Some(&1));
        assert_eq!(seen.last(), Some(&2));
        let first_new = seen.iter().position(|v| *v == 2).unwrap();
        assert!(
            seen[first_new..].iter().all(|v| *v == 2),
            "an old version after the new one: {seen:?}"
        );
    }
    server.shut_down().await;
}
