//! `sepsis serve` run as a process: it serves the production model of a
//! store that `sepsis pipeline` filled, runs a real pipeline as a training
//! job over the API, and stops cleanly on SIGTERM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const TOKEN: &str = "serve-test-token";

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/sample/physionet2019-setA-sample.csv.gz")
}

fn sepsis(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sepsis"));
    command
        .current_dir(dir)
        .arg("--store")
        .arg(dir.join("store"))
        .args(["--set", "training.num_iterations=20"])
        .env("SEPSIS__LOGGING__DIR", dir.join("logs"))
        .env("SEPSIS__TRAINING__NUM_THREADS", "1")
        .env_remove("RUST_LOG")
        .env_remove("MLFLOW_TRACKING_URI");
    command
}

/// Sends one HTTP/1.1 request and returns the status and the JSON body.
fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let text = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops the server with SIGTERM and waits for it to exit.
fn terminate(mut server: Child) -> std::process::ExitStatus {
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_predicts_and_trains() {
    let dir = tempfile::tempdir().unwrap();
    let output = sepsis(dir.path())
        .args(["pipeline", "--json", "--data"])
        .arg(sample())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pipeline: Value = serde_json::from_slice(&output.stdout).unwrap();
    if pipeline["gate"]["promoted"] != true {
        let promoted = sepsis(dir.path())
            .args(["registry", "promote", "1"])
            .output()
            .unwrap();
        assert!(
            promoted.status.success(),
            "{}",
            String::from_utf8_lossy(&promoted.stderr)
        );
    }

    // A free port: bound, read and released just before the server binds it.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = sepsis(dir.path())
        .args(["serve", "--addr", &addr.to_string()])
        .env("SEPSIS_API_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the server to be ready", Duration::from_secs(60), || {
        TcpStream::connect(addr).is_ok() && request(addr, "GET", "/ready", None).0 == 200
    });

    let row = json!({"HR": 97, "Age": 67, "Gender": 1, "ICULOS": 5, "Temp": null});
    let (status, body) = request(addr, "POST", "/predict", Some(&json!({"rows": [row]})));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"]["version"], 1);

    // The job runs this same executable with the server's store and --set flags.
    let (status, job) = request(addr, "POST", "/train", Some(&json!({"data": sample()})));
    assert_eq!(status, 202, "{job}");
    let location = format!("/train/{}", job["id"].as_str().unwrap());
    let mut finished = Value::Null;
    wait_for("the training job", Duration::from_secs(300), || {
        finished = request(addr, "GET", &location, None).1;
        finished["status"] != "running"
    });
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["registry_version"], 2);
    // The same data and settings train the same model, which ties with
    // production, so the gate keeps v1.
    assert_eq!(finished["gate"]["promoted"], false, "{finished}");
    assert!(finished["metrics"]["model"].is_object());
    let (_, model) = request(addr, "GET", "/model", None);
    assert_eq!(model["version"], 1);

    let status = terminate(server);
    assert!(
        status.success(),
        "the server exits cleanly on SIGTERM: {status}"
    );
}
