//! The `sepsis` binary run as a process, the way users run it: on the bundled
//! real PhysioNet sample, and on broken inputs that must fail cleanly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flate2::write::GzEncoder;

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

fn sample() -> PathBuf {
    repo_path("data/sample/physionet2019-setA-sample.csv.gz")
}

/// Runs `sepsis` in `dir` (where it finds no config/config.yaml, so the
/// built-in defaults apply) with its store and logs inside `dir`. LightGBM
/// gets one thread: the tests run side by side, and OpenMP threads that
/// wait for a busy core slow training down many times over.
fn sepsis(dir: &Path, args: &[&str]) -> Output {
    let store = dir.join("store");
    Command::new(env!("CARGO_BIN_EXE_sepsis"))
        .current_dir(dir)
        .args(args)
        .arg("--store")
        .arg(&store)
        .env("SEPSIS__LOGGING__DIR", dir.join("logs"))
        .env("SEPSIS__TRAINING__NUM_THREADS", "1")
        .env_remove("RUST_LOG")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .expect("the sepsis binary starts")
}

/// Runs `sepsis` in `dir` with only the given arguments and environment, so
/// that no default store or log folder masks what the test checks.
fn sepsis_plain(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sepsis"))
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("the sepsis binary starts")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout_json(output: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "sepsis failed:\n{}\n{text}",
        stderr(output)
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout must hold exactly one JSON object: {text}"
    );
    serde_json::from_str(lines[0]).expect("stdout is JSON")
}

/// Runs `sepsis data import --json` on `input` and returns its JSON result.
fn import_json(dir: &Path, input: &Path) -> serde_json::Value {
    stdout_json(&sepsis(
        dir,
        &[
            "data",
            "import",
            "--data",
            input.to_str().unwrap(),
            "--json",
        ],
    ))
}

/// Files under `store/<area>`, relative to it.
fn files_in(dir: &Path, area: &str) -> Vec<String> {
    let root = dir.join("store").join(area);
    let mut files = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    files
}

#[test]
fn pipeline_on_sample_prints_one_json_object() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample();
    let output = sepsis(
        dir.path(),
        &["pipeline", "--data", sample.to_str().unwrap(), "--json"],
    );
    let result = stdout_json(&output);

    for key in ["run_id", "data_digest", "feature_version", "model_path"] {
        assert!(result[key].is_string(), "{key} missing in {result}");
    }
    let model = &result["metrics"]["model"];
    for key in [
        "hourly/auroc",
        "hourly/auprc",
        "hourly/auroc_sepsis_label",
        "hourly/utility",
        "hourly/precision",
        "hourly/recall",
        "patients/alerted_in_time_share",
        "patients/median_lead_hours",
        "patients/precision",
        "burden/alerts_per_patient_day",
        "calibration/brier",
        "calibration/ece",
    ] {
        let value = &model
            .pointer(&format!("/{key}"))
            .unwrap_or(&serde_json::Value::Null);
        assert!(value.is_number(), "metrics.model.{key} missing in {result}");
    }
    // The sample's 200 validation patients give an AUROC near 0.8; a broken
    // feature or label pipeline falls to about 0.5.
    let auroc = model["hourly"]["auroc_sepsis_label"].as_f64().unwrap();
    assert!(auroc > 0.75, "AUROC {auroc}");
    let baselines: Vec<&str> = result["metrics"]["baselines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(baselines, ["clock", "sirs", "qsofa", "news2"]);
    let subgroups = result["metrics"]["subgroups"].as_array().unwrap();
    assert!(subgroups.iter().any(|s| s["group"] == "ICU unit"));
    assert!(subgroups.iter().any(|s| s["group"] == "age band"));
    assert_eq!(result["rows"], 38809);
    assert_eq!(result["patients"], 1000);

    let model_path = result["model_path"].as_str().unwrap();
    let local_model = model_path.strip_prefix("file://").unwrap();
    assert!(Path::new(local_model).is_file(), "{model_path}");
    let run = result["run_id"].as_str().unwrap();
    let artifacts = files_in(dir.path(), "artifacts");
    for file in [
        "model.txt",
        "model.json",
        "model_card.json",
        "model_card.md",
        "clock_model.txt",
        "drift_reference.json",
        "metrics.json",
        "report.html",
        "config.json",
    ] {
        assert!(
            artifacts.contains(&format!("runs/{run}/{file}")),
            "{artifacts:?}"
        );
    }
    let digest = result["data_digest"].as_str().unwrap();
    assert!(artifacts.contains(&format!("validation/{digest}/validation-report.json")));
    assert!(artifacts.contains(&format!("validation/{digest}/validation-report.md")));
    assert_eq!(
        files_in(dir.path(), "raw-data"),
        ["sepsis-data.csv", "sepsis-data.json"]
    );
    let feature_version = result["feature_version"].as_str().unwrap();
    assert_eq!(
        files_in(dir.path(), "feature-store"),
        [
            format!("{feature_version}/features.parquet"),
            format!("{feature_version}/manifest.json")
        ]
    );

    let sidecar: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(local_model).with_file_name("model.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sidecar["feature_names"].as_array().unwrap().len(), 457);
    assert_eq!(sidecar["feature_names"][0], "HR");
    assert_eq!(sidecar["features"]["feature_set_version"], "causal-1");

    let report =
        std::fs::read_to_string(Path::new(local_model).with_file_name("report.html")).unwrap();
    assert_eq!(report.matches("<svg").count(), 5);
    assert!(report.contains("clock"));
    assert!(!report.contains("<script"));
    let card: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(local_model).with_file_name("model_card.json")).unwrap(),
    )
    .unwrap();
    assert!(card["policy"]["statement"].is_string());
    assert_eq!(card["policy"]["max_alerts_per_patient_day"], 0.15);
    // The sample's stays without sepsis end by hour 59, and many septic ones
    // go on: the card warns that the model scores long stays as sepsis.
    let limitations = card["limitations"].as_array().unwrap();
    assert!(
        limitations.iter().any(|l| l
            .as_str()
            .unwrap()
            .contains("stays without sepsis end by hour 59")),
        "{limitations:?}"
    );
    let markdown =
        std::fs::read_to_string(Path::new(local_model).with_file_name("model_card.md")).unwrap();
    assert!(
        markdown.contains("scores a long stay as sepsis"),
        "{markdown}"
    );
}

#[test]
fn rerun_reuses_feature_version() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample();
    let args = ["pipeline", "--data", sample.to_str().unwrap(), "--json"];
    let first = stdout_json(&sepsis(dir.path(), &args));
    let second_output = sepsis(dir.path(), &args);
    let second = stdout_json(&second_output);

    assert_eq!(first["feature_reused"], false);
    assert_eq!(second["feature_reused"], true);
    assert_eq!(first["feature_version"], second["feature_version"]);
    assert_ne!(first["run_id"], second["run_id"]);
    assert!(stderr(&second_output).contains("reusing"));
    // Training is deterministic: the same data and seed give the same model.
    assert_eq!(first["metrics"]["model"], second["metrics"]["model"]);
    assert_eq!(first["metrics"]["policy"], second["metrics"]["policy"]);
    let model = |result: &serde_json::Value| {
        let path = result["model_path"].as_str().unwrap();
        std::fs::read_to_string(path.strip_prefix("file://").unwrap()).unwrap()
    };
    assert_eq!(model(&first), model(&second));
}

#[test]
fn steps_run_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample();
    let imported = import_json(dir.path(), &sample);
    assert_eq!(imported["format"], "long_csv");
    assert_eq!(imported["septic_patients"], 90);
    let ingested = stdout_json(&sepsis(dir.path(), &["ingest", "--json"]));
    assert_eq!(ingested["data_digest"], imported["digest"]);
    let validated = stdout_json(&sepsis(dir.path(), &["validate", "--json"]));
    assert_eq!(validated["passed"], true);
    let transformed = stdout_json(&sepsis(dir.path(), &["transform", "--json"]));
    assert_eq!(transformed["rows"], 38809);
    let trained = stdout_json(&sepsis(dir.path(), &["train", "--json"]));
    let run = trained["run_id"].as_str().unwrap();
    let evaluated = stdout_json(&sepsis(dir.path(), &["evaluate", "--run", run, "--json"]));
    assert_eq!(evaluated["run_id"], run);
    assert_eq!(evaluated["evaluation"], trained["metrics"]["model"]);
}

#[test]
fn evaluate_reuses_the_runs_split() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample();
    let trained = stdout_json(&sepsis(
        dir.path(),
        &["pipeline", "--data", sample.to_str().unwrap(), "--json"],
    ));
    // Another seed in the configuration must not change which patients the
    // stored run is evaluated on.
    let evaluated = stdout_json(&sepsis(
        dir.path(),
        &["evaluate", "--json", "--set", "split.seed=7"],
    ));
    assert_eq!(evaluated["run_id"], trained["run_id"]);
    assert_eq!(evaluated["evaluation"], trained["metrics"]["model"]);
}

#[test]
fn evaluate_model_without_data_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let output = sepsis(dir.path(), &["evaluate", "--model", "v1"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("--data"), "{message}");
}

#[test]
fn steps_out_of_order_fail_with_hint() {
    let dir = tempfile::tempdir().unwrap();
    let output = sepsis(dir.path(), &["ingest"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("sepsis data import"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn invalid_environment_override_names_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = sepsis_plain(
        dir.path(),
        &["validate"],
        &[("SEPSIS__TRAINING__LEARNING_RATE", "fast")],
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("training.learning_rate"), "{message}");
    assert!(
        message.contains("SEPSIS__TRAINING__LEARNING_RATE"),
        "{message}"
    );
}

#[test]
fn invalid_flag_override_names_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = sepsis(
        dir.path(),
        &["validate", "--set", "split.validation_fraction=2"],
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("split.validation_fraction"), "{message}");
    assert!(message.contains('2'), "{message}");
}

#[test]
fn set_flags_on_both_sides_all_apply() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--set",
        "training.num_leaves=1",
        "validate",
        "--set",
        "split.seed=3",
    ];
    let output = sepsis_plain(dir.path(), &args, &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("training.num_leaves"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn invalid_store_uri_is_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = sepsis_plain(dir.path(), &["validate", "--store", "s3://"], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("s3://"), "{}", stderr(&output));
}

#[test]
fn store_folder_named_like_yaml_value() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["123", "true", "null", "a: b"] {
        std::fs::create_dir(dir.path().join(name)).unwrap();
        let output = sepsis_plain(
            dir.path(),
            &["registry", "list", "--store", name],
            &[("SEPSIS__LOGGING__DIR", "")],
        );
        assert!(output.status.success(), "{name}: {}", stderr(&output));
    }
}

#[test]
fn failed_run_tracking_has_no_patient_values() {
    let dir = tempfile::tempdir().unwrap();
    let rows_of = |patient: &str, hr: &str| {
        let mut lines = vec![HEADER.to_string()];
        for hour in 1..=3 {
            lines.push(row(patient, hour, if hour == 2 { hr } else { "80" }));
        }
        lines
    };
    let not_a_number = rows_of("patient-x7", "4x4");
    let out_of_range = rows_of("patient-y9", "950");
    for (name, lines, hidden) in [
        ("number.csv", not_a_number, ["4x4", "patient-x7"]),
        ("range.csv", out_of_range, ["950", "patient-y9"]),
    ] {
        let input = write_csv(dir.path(), name, &lines);
        let output = sepsis(dir.path(), &["pipeline", "--data", input.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        // The error output still names the value.
        assert!(stderr(&output).contains(hidden[0]), "{}", stderr(&output));
    }
    let tracking = dir.path().join("store/artifacts/tracking");
    let mut runs = 0;
    for entry in std::fs::read_dir(&tracking).unwrap() {
        let record = std::fs::read_to_string(entry.unwrap().path().join("run.json")).unwrap();
        let record: serde_json::Value = serde_json::from_str(&record).unwrap();
        let error = record["error"].as_str().unwrap();
        for text in ["4x4", "950", "patient-x7", "patient-y9"] {
            assert!(!error.contains(text), "{text} in {error}");
        }
        assert!(
            error.contains("line") || error.contains("validation failed"),
            "{error}"
        );
        runs += 1;
    }
    assert_eq!(runs, 2);
}

#[test]
fn flag_overrides_environment() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample();
    let output = Command::new(env!("CARGO_BIN_EXE_sepsis"))
        .current_dir(dir.path())
        .args(["pipeline", "--json", "--data", sample.to_str().unwrap()])
        .arg("--store")
        .arg(dir.path().join("store"))
        .args(["--set", "alert.max_alerts_per_patient_day=0.3"])
        .env("SEPSIS__ALERT__MAX_ALERTS_PER_PATIENT_DAY", "0.05")
        .env("SEPSIS__LOGGING__DIR", dir.path().join("logs"))
        .env("SEPSIS__TRAINING__NUM_THREADS", "1")
        .output()
        .unwrap();
    let result = stdout_json(&output);
    assert_eq!(
        result["metrics"]["policy"]["max_alerts_per_patient_day"],
        0.3
    );
}

#[test]
fn unwritable_log_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A folder where today's log file should go makes opening it fail.
    for day in ["yesterday", "today", "tomorrow"] {
        let date = Command::new("date")
            .args(["-u", "-d", day, "+%F"])
            .output()
            .unwrap();
        let date = String::from_utf8(date.stdout).unwrap();
        std::fs::create_dir_all(dir.path().join(format!("logs/sepsis.log.{}", date.trim())))
            .unwrap();
    }
    let output = sepsis(dir.path(), &["registry", "list"]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(message.contains("cannot write the log file"), "{message}");
    assert!(message.contains("logging.dir"), "{message}");
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn log_file_has_step_spans_without_patient_ids() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample();
    stdout_json(&sepsis(
        dir.path(),
        &["pipeline", "--data", sample.to_str().unwrap(), "--json"],
    ));
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(logs.len(), 1);
    let text = std::fs::read_to_string(logs[0].path()).unwrap();
    for step in [
        "import",
        "ingest",
        "validate",
        "transform",
        "train",
        "evaluate",
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("step=\"{step}\"")) && l.contains("step finished"))
            .unwrap_or_else(|| panic!("no finished span for {step}:\n{text}"));
        assert!(line.contains("elapsed_ms="), "{line}");
        assert!(line.contains("rows="), "{line}");
    }
    assert!(
        !text.contains("p000"),
        "a patient id reached the log:\n{text}"
    );
}

// Bad input: each case exits non-zero, names the file, line and column where
// one exists, and leaves no feature version and no model behind.

const HEADER: &str = "patient_id,HR,O2Sat,Temp,SBP,MAP,DBP,Resp,EtCO2,BaseExcess,HCO3,FiO2,pH,PaCO2,SaO2,AST,BUN,Alkalinephos,Calcium,Chloride,Creatinine,Bilirubin_direct,Glucose,Lactate,Magnesium,Phosphate,Potassium,Bilirubin_total,TroponinI,Hct,Hgb,PTT,WBC,Fibrinogen,Platelets,Age,Gender,Unit1,Unit2,HospAdmTime,ICULOS,SepsisLabel";

/// Builds a valid long-format row for `patient` at `hour` with heart rate `hr`.
fn row(patient: &str, hour: u32, hr: &str) -> String {
    let mut fields = vec![String::new(); 41];
    fields[0] = hr.to_string();
    fields[34] = "61.5".into();
    fields[35] = "0".into();
    fields[38] = "-0.03".into();
    fields[39] = hour.to_string();
    fields[40] = "0".into();
    format!("{patient},{}", fields.join(","))
}

fn valid_rows() -> Vec<String> {
    let mut lines = vec![HEADER.to_string()];
    for patient in ["p1", "p2"] {
        for hour in 1..=3 {
            lines.push(row(patient, hour, "80"));
        }
    }
    lines
}

struct BadInput {
    name: &'static str,
    file_name: &'static str,
    contents: Vec<u8>,
    /// Substrings the error message must contain.
    expected: Vec<&'static str>,
}

fn bad_inputs() -> Vec<BadInput> {
    let mut text_in_number = valid_rows();
    text_in_number[4] = row("p2", 1, "eighty");

    let missing_column = valid_rows()
        .iter()
        .map(|l| {
            let mut fields: Vec<&str> = l.split(',').collect();
            fields.remove(3);
            fields.join(",")
        })
        .collect::<Vec<_>>();

    let missing_label = valid_rows()
        .iter()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect::<Vec<_>>();

    let sample_bytes = std::fs::read(sample()).unwrap();
    let truncated = sample_bytes[..sample_bytes.len() / 2].to_vec();

    let mut out_of_range = valid_rows();
    out_of_range[2] = row("p1", 2, "950");

    let mut duplicate_hour = valid_rows();
    duplicate_hour[3] = row("p1", 2, "80");

    vec![
        BadInput {
            name: "text in a numeric column",
            file_name: "text.csv",
            contents: (text_in_number.join("\n") + "\n").into_bytes(),
            expected: vec!["text.csv", "line 5", "\"HR\"", "\"eighty\""],
        },
        BadInput {
            name: "a missing column",
            file_name: "missing-column.csv",
            contents: (missing_column.join("\n") + "\n").into_bytes(),
            expected: vec!["missing-column.csv", "line 1", "\"Temp\"", "missing column"],
        },
        BadInput {
            name: "a missing label",
            file_name: "no-label.csv",
            contents: (missing_label.join("\n") + "\n").into_bytes(),
            expected: vec!["no-label.csv", "line 1", "\"label_12h\"", "missing label"],
        },
        BadInput {
            name: "an empty file",
            file_name: "empty.csv",
            contents: Vec::new(),
            expected: vec!["empty.csv", "line 1", "empty"],
        },
        BadInput {
            name: "a truncated gzip",
            file_name: "truncated.csv.gz",
            contents: truncated,
            expected: vec!["truncated.csv.gz", "line ", "truncated"],
        },
        BadInput {
            name: "a value out of its physiological range",
            file_name: "range.csv",
            contents: (out_of_range.join("\n") + "\n").into_bytes(),
            expected: vec!["validation failed", "\"HR\"", "line 3", "950"],
        },
        BadInput {
            name: "no septic patient",
            file_name: "no-septic.csv",
            contents: (valid_rows().join("\n") + "\n").into_bytes(),
            expected: vec![
                "validation failed",
                "\"label_12h\"",
                "0 patient(s) have a positive label",
            ],
        },
        BadInput {
            name: "an empty label in a ready file",
            file_name: "ready.csv",
            contents: {
                let mut lines: Vec<String> =
                    valid_rows().iter().map(|l| format!("{l},0")).collect();
                lines[0] = format!("{HEADER},label_12h");
                lines[3] = format!("{},", row("p1", 3, "80"));
                (lines.join("\n") + "\n").into_bytes()
            },
            expected: vec!["ready.csv", "line 4", "\"label_12h\"", "missing value"],
        },
        BadInput {
            name: "a gzip of zeros",
            file_name: "zeros.csv.gz",
            contents: {
                let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(&vec![0u8; 3 << 20]).unwrap();
                encoder.finish().unwrap()
            },
            expected: vec!["zeros.csv.gz", "line 1", "longer than 1 MiB"],
        },
        BadInput {
            name: "a duplicate patient hour",
            file_name: "duplicate.csv",
            contents: (duplicate_hour.join("\n") + "\n").into_bytes(),
            expected: vec!["validation failed", "duplicate", "\"ICULOS\"", "line 4"],
        },
    ]
}

fn assert_rejected(dir: &Path, input: &Path, case: &str, expected: &[&str]) {
    let output = sepsis(
        dir,
        &["pipeline", "--data", input.to_str().unwrap(), "--json"],
    );
    let message = stderr(&output);
    assert!(!output.status.success(), "{case}: accepted\n{message}");
    assert_eq!(output.status.code(), Some(1), "{case}: {message}");
    assert!(output.stdout.is_empty(), "{case}: printed a result");
    for text in expected {
        assert!(
            message.contains(text),
            "{case}: {text:?} not in:\n{message}"
        );
    }
    assert!(!message.contains("panicked"), "{case}: {message}");
    assert!(
        files_in(dir, "feature-store").is_empty(),
        "{case}: a feature version was written"
    );
    let runs: Vec<String> = files_in(dir, "artifacts")
        .into_iter()
        .filter(|f| f.starts_with("runs/"))
        .collect();
    assert!(runs.is_empty(), "{case}: a model was written: {runs:?}");
}

#[test]
fn bad_inputs_fail_cleanly() {
    for case in bad_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join(case.file_name);
        std::fs::write(&input, &case.contents).unwrap();
        assert_rejected(dir.path(), &input, case.name, &case.expected);
    }
}

#[test]
fn psv_with_wrong_header_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("psv");
    std::fs::create_dir(&folder).unwrap();
    let header = HEADER
        .replacen("patient_id,", "", 1)
        .replace(',', "|")
        .replace("|Resp|", "|RespRate|");
    let body = row("x", 1, "80")
        .split_once(',')
        .unwrap()
        .1
        .replace(',', "|");
    std::fs::write(folder.join("p000001.psv"), format!("{header}\n{body}\n")).unwrap();
    assert_rejected(
        dir.path(),
        &folder,
        "a .psv with a wrong header",
        &["p000001.psv", "line 1", "\"RespRate\"", "unknown column"],
    );
}

#[test]
fn psv_validation_error_names_source_file() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("psv");
    std::fs::create_dir(&folder).unwrap();
    let header = HEADER.replacen("patient_id,", "", 1).replace(',', "|");
    for (patient, bad_hour) in [("p000001", 0), ("p000002", 2)] {
        let mut text = format!("{header}\n");
        for hour in 1..=3 {
            let hr = if hour == bad_hour { "999" } else { "80" };
            let body = row("x", hour, hr)
                .split_once(',')
                .unwrap()
                .1
                .replace(',', "|");
            text.push_str(&body);
            text.push('\n');
        }
        std::fs::write(folder.join(format!("{patient}.psv")), text).unwrap();
    }
    assert_rejected(
        dir.path(),
        &folder,
        "an out-of-range value in a .psv file",
        &["p000002.psv line 3", "\"HR\"", "999"],
    );
}

#[test]
fn psv_directory_imports() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("psv");
    std::fs::create_dir(&folder).unwrap();
    let header = HEADER.replacen("patient_id,", "", 1).replace(',', "|");
    for patient in ["p000001", "p000002"] {
        let mut text = format!("{header}\n");
        for hour in 1..=4 {
            let body = row("x", hour, "NaN")
                .split_once(',')
                .unwrap()
                .1
                .replace(',', "|");
            text.push_str(&body);
            text.push('\n');
        }
        std::fs::write(folder.join(format!("{patient}.psv")), text).unwrap();
    }
    let result = import_json(dir.path(), &folder);
    assert_eq!(result["format"], "psv_directory");
    assert_eq!(result["patients"], 2);
    assert_eq!(result["rows"], 8);

    // An output path naming one of the input files is rejected.
    let first = folder.join("p000001.psv");
    let before = std::fs::read(&first).unwrap();
    let output = sepsis(
        dir.path(),
        &[
            "predict",
            "--data",
            folder.to_str().unwrap(),
            "--out",
            first.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("is an input file"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(&first).unwrap(), before);

    // A file with a header only is skipped with a warning that counts it.
    std::fs::write(folder.join("p000003.psv"), format!("{header}\n")).unwrap();
    let output = sepsis(
        dir.path(),
        &[
            "data",
            "import",
            "--data",
            folder.to_str().unwrap(),
            "--json",
        ],
    );
    let message = stderr(&output);
    assert_eq!(stdout_json(&output)["patients"], 2);
    assert!(message.contains("empty_files=1"), "{message}");
    assert!(!message.contains("p000003"), "{message}");
}

#[test]
fn gzip_and_plain_csv_import_identically() {
    let dir = tempfile::tempdir().unwrap();
    let text = valid_rows().join("\n") + "\n";
    let plain = dir.path().join("data.csv");
    std::fs::write(&plain, &text).unwrap();
    let gzipped = dir.path().join("data.csv.gz");
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    std::fs::write(&gzipped, encoder.finish().unwrap()).unwrap();

    let first = import_json(dir.path(), &plain);
    let second = import_json(dir.path(), &gzipped);
    assert_eq!(first["digest"], second["digest"]);
}

#[test]
fn ready_file_with_label_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample();
    import_json(dir.path(), &sample);
    // The imported file is itself a ready sepsis-data.csv with label_12h.
    let ready = dir.path().join("sepsis-data.csv");
    std::fs::copy(dir.path().join("store/raw-data/sepsis-data.csv"), &ready).unwrap();
    let other = tempfile::tempdir().unwrap();
    let result = import_json(other.path(), &ready);
    assert_eq!(result["format"], "ready");
    assert_eq!(result["septic_patients"], 90);
    assert_eq!(result["rows"], 38809);
}

// Scoring: `sepsis evaluate --data` and `sepsis predict` on files the model
// was not trained on, including the awkward histories the schema decides.

/// Writes `lines` as a CSV file in `dir`.
fn write_csv(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Builds a row with most vitals set and every lab missing.
fn vitals_row(patient: &str, hour: u32, hr: &str) -> String {
    let mut fields: Vec<String> = row(patient, hour, hr)
        .split(',')
        .map(str::to_string)
        .collect();
    // O2Sat, Temp, SBP, MAP, Resp after the id and HR.
    for (index, value) in [(2, "97"), (3, "37.1"), (4, "118"), (5, "80"), (7, "18")] {
        fields[index] = value.to_string();
    }
    fields.join(",")
}

#[test]
fn evaluate_and_predict_score_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample();
    let sample = sample.to_str().unwrap();
    let trained = stdout_json(&sepsis(
        dir.path(),
        &["pipeline", "--data", sample, "--json"],
    ));
    let run = trained["run_id"].as_str().unwrap();

    let by_id = stdout_json(&sepsis(
        dir.path(),
        &["evaluate", "--data", sample, "--model", run, "--json"],
    ));
    assert_eq!(by_id["run_id"], run);
    assert_eq!(by_id["rows"], 38809);
    assert_eq!(by_id["patients"], 1000);
    let auroc = by_id["evaluation"]["hourly"]["auroc_sepsis_label"]
        .as_f64()
        .unwrap();
    // The sample includes the training patients, so this is above the
    // validation AUROC; it shows the scoring path computes the same features.
    assert!(auroc > 0.85, "AUROC {auroc}");
    // The patient-bootstrap interval contains the AUROC of the whole file,
    // and it is narrower on these 1,000 patients than on the 200 validation
    // ones.
    let interval = |value: &serde_json::Value| {
        let bound = |side: &str| value["auroc_sepsis_label"][side].as_f64().unwrap();
        (bound("low"), bound("high"))
    };
    let intervals = &by_id["evaluation"]["intervals"];
    assert_eq!(intervals["resamples"], 1000);
    let (low, high) = interval(intervals);
    assert!(low < auroc, "{low} {auroc}");
    assert!(auroc < high, "{auroc} {high}");
    let (validation_low, validation_high) = interval(&trained["metrics"]["model"]["intervals"]);
    assert!(high - low < validation_high - validation_low);
    let names: Vec<&str> = by_id["baselines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["clock", "sirs", "qsofa", "news2"]);
    assert_eq!(
        by_id["evaluation"]["threshold"],
        trained["metrics"]["policy"]["threshold"]
    );
    let folder = dir.path().join("store/artifacts/runs").join(run);
    let by_path = stdout_json(&sepsis(
        dir.path(),
        &[
            "evaluate",
            "--data",
            sample,
            "--model",
            folder.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(by_path["evaluation"], by_id["evaluation"]);
    // The same model is named by the same URI, whether chosen by run id or by path.
    let model_uri = by_id["model"].as_str().unwrap();
    assert!(model_uri.starts_with("file:///"), "{model_uri}");
    assert_eq!(by_path["model"], by_id["model"]);

    let out = dir.path().join("predictions.csv");
    let predicted = stdout_json(&sepsis(
        dir.path(),
        &[
            "predict",
            "--data",
            sample,
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(predicted["rows"], 38809);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("patient_id,hour,probability,alert"));
    let mut alerts = 0;
    for line in lines.clone() {
        let fields: Vec<&str> = line.split(',').collect();
        let probability: f64 = fields[2].parse().unwrap();
        assert!((0.0..=1.0).contains(&probability), "{line}");
        alerts += usize::from(fields[3] == "1");
        assert!(fields[3] == "0" || fields[3] == "1", "{line}");
    }
    assert_eq!(lines.count(), 38809);
    assert_eq!(alerts, predicted["alert_hours"].as_u64().unwrap() as usize);

    // Unlabelled data, a one-hour stay and a patient without any lab are
    // scored; their features follow the documented rules.
    let mut unlabelled = vec![HEADER.replace(",SepsisLabel", "")];
    unlabelled.push(strip_label(&vitals_row("single", 1, "88")));
    for hour in 1..=30 {
        unlabelled.push(strip_label(&vitals_row("no-labs", hour, "95")));
    }
    let input = write_csv(dir.path(), "unlabelled.csv", &unlabelled);
    let out = dir.path().join("unlabelled-predictions.csv");
    let predicted = stdout_json(&sepsis(
        dir.path(),
        &[
            "predict",
            "--data",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(predicted["rows"], 31);
    assert_eq!(predicted["patients"], 2);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.lines().nth(1).unwrap().starts_with("single,1,"));

    // Evaluation needs labels: no label column, or an empty outcome, which
    // would otherwise read as "not septic".
    let output = sepsis(
        dir.path(),
        &["evaluate", "--data", input.to_str().unwrap(), "--json"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("missing label"),
        "{}",
        stderr(&output)
    );
    let mut blank_outcome = valid_rows();
    blank_outcome[2] = row("p1", 2, "80").rsplit_once(',').unwrap().0.to_string() + ",";
    let input = write_csv(dir.path(), "blank-outcome.csv", &blank_outcome);
    let output = sepsis(
        dir.path(),
        &["evaluate", "--data", input.to_str().unwrap(), "--json"],
    );
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(message.contains("blank-outcome.csv"), "{message}");
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("\"SepsisLabel\""), "{message}");

    // --out follows a symbolic link instead of replacing it, and names a
    // folder given in its place.
    #[cfg(unix)]
    {
        let real = dir.path().join("real.csv");
        std::fs::write(&real, "old\n").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let output = sepsis(
            dir.path(),
            &["predict", "--data", sample, "--out", link.to_str().unwrap()],
        );
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let text = std::fs::read_to_string(&real).unwrap();
        assert!(text.starts_with("patient_id,hour,probability,alert"));
    }
    let output = sepsis(
        dir.path(),
        &[
            "predict",
            "--data",
            sample,
            "--out",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("is a folder"),
        "{}",
        stderr(&output)
    );

    // A result that cannot be written is an error, not a panic.
    #[cfg(target_os = "linux")]
    {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_sepsis"))
            .current_dir(dir.path())
            .args(["evaluate", "--data", sample, "--json", "--store"])
            .arg(dir.path().join("store"))
            .env("SEPSIS__LOGGING__DIR", dir.path().join("logs"))
            .stdout(full)
            .output()
            .unwrap();
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{message}");
        assert!(
            message.contains("writing the result to stdout failed"),
            "{message}"
        );
        assert!(!message.contains("panicked"), "{message}");
    }

    // A mistyped store is not created by a command that only reads it, and
    // a model given as a path needs no store.
    let missing = dir.path().join("typo/store");
    let missing = missing.to_str().unwrap();
    let no_log = [
        ("SEPSIS__LOGGING__DIR", ""),
        ("SEPSIS__TRAINING__NUM_THREADS", "1"),
    ];
    let output = sepsis_plain(
        dir.path(),
        &[
            "predict", "--data", sample, "--out", "y.csv", "--store", missing,
        ],
        &no_log,
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("does not exist"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.path().join("typo").exists());
    let folder = folder.to_str().unwrap();
    let output = sepsis_plain(
        dir.path(),
        &[
            "predict", "--data", sample, "--out", "y.csv", "--store", missing, "--model", folder,
        ],
        &no_log,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!dir.path().join("typo").exists());

    let output = sepsis(
        dir.path(),
        &[
            "predict",
            "--data",
            sample,
            "--out",
            "x.csv",
            "--model",
            "no-such-run",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("\"no-such-run\" not found"),
        "{}",
        stderr(&output)
    );

    // An output path naming the input file is rejected, and the input kept.
    let input = write_csv(dir.path(), "same.csv", &valid_rows());
    let before = std::fs::read(&input).unwrap();
    let same = input.to_str().unwrap();
    let output = sepsis(dir.path(), &["predict", "--data", same, "--out", same]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("is an input file"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(&input).unwrap(), before);

    // A read-only output file is rejected and left as it was.
    let locked = dir.path().join("locked.csv");
    std::fs::write(&locked, "keep\n").unwrap();
    let mut permissions = std::fs::metadata(&locked).unwrap().permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&locked, permissions).unwrap();
    let output = sepsis(
        dir.path(),
        &["predict", "--data", same, "--out", locked.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("read-only"), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(&locked).unwrap(), "keep\n");

    // An output path inside the store, or beside the model read from a
    // folder, would replace a model file: both are rejected.
    let stored_model = std::path::Path::new(folder).join("model.txt");
    let model_before = std::fs::read(&stored_model).unwrap();
    let output = sepsis(
        dir.path(),
        &[
            "predict",
            "--data",
            same,
            "--out",
            stored_model.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("is inside the store"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(&stored_model).unwrap(), model_before);
    let copied = dir.path().join("copied-model");
    std::fs::create_dir(&copied).unwrap();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copied.join(path.file_name().unwrap())).unwrap();
    }
    let copied_model = copied.join("model.txt");
    let output = sepsis(
        dir.path(),
        &[
            "predict",
            "--data",
            same,
            "--model",
            copied.to_str().unwrap(),
            "--out",
            copied_model.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("in the folder of the model"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(&copied_model).unwrap(), model_before);

    // Histories that the schema refuses: named errors and no output file.
    let mut shuffled = valid_rows();
    shuffled.swap(2, 3);
    let mut duplicated = valid_rows();
    duplicated[3] = row("p1", 2, "80");
    let mut out_of_range = valid_rows();
    out_of_range[5] = row("p2", 2, "950");
    for (name, lines, expected) in [
        (
            "order.csv",
            shuffled,
            vec!["order", "order.csv line 4", "\"ICULOS\""],
        ),
        (
            "twice.csv",
            duplicated,
            vec!["duplicate", "twice.csv line 4", "\"ICULOS\""],
        ),
        (
            "range.csv",
            out_of_range,
            vec!["\"HR\"", "range.csv line 6", "950"],
        ),
    ] {
        let input = write_csv(dir.path(), name, &lines);
        let out = dir.path().join(format!("{name}.predictions.csv"));
        let output = sepsis(
            dir.path(),
            &[
                "predict",
                "--data",
                input.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{name}: {message}");
        for text in expected {
            assert!(message.contains(text), "{name}: {text:?} not in {message}");
        }
        assert!(!message.contains("panicked"), "{name}: {message}");
        assert!(!out.exists(), "{name}: a prediction file was written");
    }
}

fn strip_label(line: &str) -> String {
    line.rsplit_once(',').unwrap().0.to_string()
}

fn registry_list(dir: &Path) -> serde_json::Value {
    stdout_json(&sepsis(dir, &["registry", "list", "--json"]))
}

fn version_numbers(list: &serde_json::Value) -> Vec<u64> {
    list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect()
}

#[test]
fn gate_keeps_production_on_tie() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample();
    let args = ["pipeline", "--data", sample.to_str().unwrap(), "--json"];
    let first = stdout_json(&sepsis(dir.path(), &args));
    assert_eq!(first["registry_version"], 1);
    assert_eq!(first["gate"]["promoted"], true, "{}", first["gate"]);
    assert!(first["gate"]["production_version"].is_null());

    let second = stdout_json(&sepsis(dir.path(), &args));
    let gate = &second["gate"];
    assert_eq!(second["registry_version"], 2);
    assert_eq!(gate["promoted"], false, "{gate}");
    assert_eq!(gate["production_version"], 1);
    assert_eq!(gate["metric"], "utility");
    // The same data and seed train the same model: a tie keeps production,
    // and on the same patients the gain is exactly zero.
    assert_eq!(gate["candidate_value"], gate["production_value"]);
    assert_eq!(gate["gain_interval"]["low"], 0.0);
    assert_eq!(gate["gain_interval"]["high"], 0.0);
    assert!(
        gate["reasons"][0].as_str().unwrap().contains("tie"),
        "{gate}"
    );

    let list = registry_list(dir.path());
    assert_eq!(version_numbers(&list), vec![1, 2]);
    assert_eq!(list["production"]["version"], 1);
    // The decision is kept with the run, too.
    let run = second["run_id"].as_str().unwrap();
    let stored = dir
        .path()
        .join(format!("store/artifacts/runs/{run}/gate.json"));
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(stored).unwrap()).unwrap();
    assert_eq!(&stored, gate);

    // The gate scores production and then the candidate, and the log names
    // the run that each scoring step measured.
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .flatten()
        .collect();
    let text = std::fs::read_to_string(logs[0].path()).unwrap();
    let first_run = first["run_id"].as_str().unwrap();
    for scored in [first_run, run] {
        assert!(
            text.lines().any(|l| l.contains(&format!("run_id={scored}"))
                && l.contains("step=\"evaluate\"")
                && l.contains("step finished")),
            "no scoring step names run {scored}:\n{text}"
        );
    }

    // Each version is whole and names its data, features and code.
    let version_json = stdout_json(&sepsis(dir.path(), &["registry", "show", "v2", "--json"]));
    let record = &version_json["version"];
    assert_eq!(record["data_digest"], second["data_digest"]);
    assert_eq!(record["feature_set_version"], "causal-1");
    let files: Vec<&str> = record["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for expected in [
        "model.txt",
        "model.json",
        "model_card.json",
        "transformer.json",
    ] {
        assert!(files.contains(&expected), "{files:?}");
    }

    // Promotion by hand and rollback move the pointer and keep its history.
    let promoted = stdout_json(&sepsis(
        dir.path(),
        &["registry", "promote", "v2", "--json"],
    ));
    assert_eq!(promoted["version"], 2);
    let back = stdout_json(&sepsis(dir.path(), &["registry", "rollback", "--json"]));
    assert_eq!(back["version"], 1);
    assert_eq!(back["action"], "rollback");
    let again = sepsis(dir.path(), &["registry", "rollback"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("no earlier production version"),
        "{}",
        stderr(&again)
    );
    let missing = sepsis(dir.path(), &["registry", "promote", "v7"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("v7 does not exist"),
        "{}",
        stderr(&missing)
    );

    // Scoring without --model uses production.
    let out = dir.path().join("predictions.csv");
    let predicted = stdout_json(&sepsis(
        dir.path(),
        &[
            "predict",
            "--data",
            sample.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(predicted["run_id"], first["run_id"]);
}

/// Runs that divide the training patients differently but keep the split
/// seed and validation fraction have the same validation patients, so the
/// gate measures production on them instead of refusing to compare.
#[test]
fn gate_compares_runs_with_other_folds() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample();
    let run = |folds: &str| {
        stdout_json(&sepsis(
            dir.path(),
            &[
                "pipeline",
                "--data",
                sample.to_str().unwrap(),
                "--set",
                &format!("training.folds={folds}"),
                "--set",
                "training.num_iterations=20",
                "--json",
            ],
        ))
    };
    let first = run("2");
    assert_eq!(first["gate"]["promoted"], true, "{}", first["gate"]);
    let second = run("1");
    let gate = &second["gate"];
    assert_eq!(gate["production_version"], 1, "{gate}");
    assert!(gate["production_value"].is_number(), "{gate}");
    assert!(
        !gate.to_string().contains("split the patients differently"),
        "{gate}"
    );
}

/// A run that fails at any point leaves production as it was and the
/// registry readable; the next run still works.
#[test]
fn failure_leaves_production_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample();
    let data = sample.to_str().unwrap();
    // A deliberately weak first model, let through by low minimums, so the
    // runs below beat it and reach the pointer. Every rule that alerts at
    // all breaks an alert budget of 1e-6 per patient-day, so it never
    // alerts and its utility is 0.
    let weak = stdout_json(&sepsis(
        dir.path(),
        &[
            "pipeline",
            "--data",
            data,
            "--set",
            "training.num_iterations=2",
            "--set",
            "alert.max_alerts_per_patient_day=0.000001",
            "--set",
            "registry.gate.minimums.utility=-1",
            "--set",
            "registry.gate.minimums.auroc_sepsis_label=0",
            "--json",
        ],
    ));
    assert_eq!(weak["gate"]["promoted"], true, "{}", weak["gate"]);
    let before = registry_list(dir.path());

    for point in sepsis_ews::failpoint::POINTS {
        let output = Command::new(env!("CARGO_BIN_EXE_sepsis"))
            .current_dir(dir.path())
            .args([
                "pipeline",
                "--data",
                data,
                "--set",
                "training.num_iterations=40",
            ])
            .arg("--store")
            .arg(dir.path().join("store"))
            .env("SEPSIS__LOGGING__DIR", dir.path().join("logs"))
            .env("SEPSIS__TRAINING__NUM_THREADS", "1")
            .env("SEPSIS_FAIL_AT", point)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{point}: the run did not fail");
        assert!(
            stderr(&output).contains(&format!("failure injected at {point}")),
            "{point}: {}",
            stderr(&output)
        );
        let after = registry_list(dir.path());
        assert_eq!(after["production"], before["production"], "{point}");
        // Only whole versions are listed: a version cut short before its
        // record is invisible.
        for version in after["versions"].as_array().unwrap() {
            assert!(version["files"].as_array().unwrap().len() >= 7, "{point}");
        }
    }

    // Without an injected failure the same run is promoted over the weak model.
    let run = stdout_json(&sepsis(
        dir.path(),
        &[
            "pipeline",
            "--data",
            data,
            "--set",
            "training.num_iterations=40",
            "--json",
        ],
    ));
    assert_eq!(run["gate"]["promoted"], true, "{}", run["gate"]);
    let after = registry_list(dir.path());
    assert_eq!(after["production"]["version"], run["registry_version"]);
    assert_eq!(after["production"]["history"], serde_json::json!([1]));
}

/// `sepsis pipeline` against a real MLflow server, read back with MLflow's
/// Python client: the run, its params, metrics, tags and artifacts, and the
/// alias `champion` on the promoted model. `scripts/test` starts the server.
#[test]
fn pipeline_run_is_tracked_in_mlflow() {
    let (uri, python) = mlflow_test_server();
    let dir = tempfile::tempdir().unwrap();
    let unique = unique_name(dir.path());
    let experiment = format!("cli-{unique}");
    let model = format!("sepsis-cli-{unique}");
    let sample = sample();
    let model_setting = format!("registry.model_name={model}");
    let args = [
        "pipeline",
        "--data",
        sample.to_str().unwrap(),
        "--json",
        "--set",
        &model_setting,
    ];
    let outcome = stdout_json(&sepsis_tracked(dir.path(), &args, &uri, &experiment));
    let tracking = &outcome["tracking"];
    assert_eq!(tracking["state"], "recorded", "{tracking}");
    assert_eq!(tracking["outcome"], "logged", "{tracking}");
    let run_id = tracking["mlflow_run_id"].as_str().unwrap();

    let read = check_mlflow(&python, &uri, run_id, &model);
    let run = &read["run"];
    assert_eq!(run["status"], "FINISHED");
    assert_eq!(run["params"]["training.num_leaves"], "15");
    let utility = run["metrics"]["validation.hourly.utility"]
        .as_f64()
        .unwrap();
    let expected = outcome["metrics"]["model"]["hourly"]["utility"]
        .as_f64()
        .unwrap();
    assert!(
        (utility - expected).abs() < 1e-12,
        "{utility} vs {expected}"
    );
    let low = run["metrics"]["validation.intervals.utility.low"]
        .as_f64()
        .unwrap();
    let expected = outcome["metrics"]["model"]["intervals"]["utility"]["low"]
        .as_f64()
        .unwrap();
    assert!((low - expected).abs() < 1e-12, "{low} vs {expected}");
    assert_eq!(run["tags"]["sepsis.data_digest"], outcome["data_digest"]);
    assert_eq!(run["tags"]["sepsis.gate.promoted"], "true");
    let artifacts: Vec<&str> = run["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for expected in [
        "model/model.txt",
        "model/model_card.json",
        "report.html",
        "validation/validation-report.json",
        "gate.json",
    ] {
        assert!(
            artifacts.contains(&expected),
            "{expected} missing: {artifacts:?}"
        );
    }
    // models:/<name>@champion resolves to this run's model.
    let champion = &read["model"];
    assert_eq!(champion["run_id"], run_id);
    assert_eq!(champion["version"], "1");
    assert!(champion["files"]["model.txt"].is_string(), "{champion}");
}

/// Returns the address of the MLflow server and the Python that `scripts/test`
/// provide.
fn mlflow_test_server() -> (String, String) {
    let uri = std::env::var("SEPSIS_TEST_MLFLOW_URI").expect(
        "SEPSIS_TEST_MLFLOW_URI is not set: run the tests through scripts/test, \
         which starts a local MLflow server",
    );
    let python = std::env::var("SEPSIS_TEST_PYTHON")
        .expect("SEPSIS_TEST_PYTHON is not set: run the tests through scripts/test");
    (uri, python)
}

/// Returns a name part unique to the temporary folder `dir`, so tests that
/// share one MLflow server never share an experiment or a model.
fn unique_name(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().replace('.', "-")
}

/// Runs `sepsis` as [`sepsis`] does, but tracked on the MLflow server `uri`.
fn sepsis_tracked(dir: &Path, args: &[&str], uri: &str, experiment: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sepsis"))
        .current_dir(dir)
        .args(args)
        .arg("--store")
        .arg(dir.join("store"))
        .env("SEPSIS__LOGGING__DIR", dir.join("logs"))
        .env("SEPSIS__TRAINING__NUM_THREADS", "1")
        .env_remove("RUST_LOG")
        .env("MLFLOW_TRACKING_URI", uri)
        .env("MLFLOW_EXPERIMENT_NAME", experiment)
        .env_remove("MLFLOW_TRACKING_USERNAME")
        .env_remove("MLFLOW_TRACKING_PASSWORD")
        .env_remove("MLFLOW_TRACKING_TOKEN")
        .output()
        .expect("the sepsis binary starts")
}

/// Runs Python with `args` against the MLflow server `uri` and parses the
/// JSON it prints.
fn python_json(python: &str, uri: &str, args: &[&str]) -> serde_json::Value {
    let output = Command::new(python)
        .args(args)
        .env("MLFLOW_TRACKING_URI", uri)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Reads a run and the model `model@champion` with `scripts/check_mlflow.py`.
fn check_mlflow(python: &str, uri: &str, run_id: &str, model: &str) -> serde_json::Value {
    let script = repo_path("scripts/check_mlflow.py");
    python_json(
        python,
        uri,
        &[script.to_str().unwrap(), run_id, "--model", model],
    )
}

/// Reads the aliases of a registered model with MLflow's Python client.
fn mlflow_aliases(python: &str, uri: &str, model: &str) -> serde_json::Value {
    let code = "import json, sys\n\
                from mlflow import MlflowClient\n\
                print(json.dumps(MlflowClient().get_registered_model(sys.argv[1]).aliases))";
    python_json(python, uri, &["-c", code, model])
}

/// Moving production by hand moves MLflow's alias `champion` with it. A
/// promotion to a version that the gate held back registers that version's
/// run in MLflow and points the alias there, a rollback points it back,
/// and a version whose run never reached the server removes the alias.
/// Read back with MLflow's Python client from the server that `scripts/test`
/// starts.
#[test]
fn manual_promotion_moves_mlflow_alias() {
    let (uri, python) = mlflow_test_server();
    let dir = tempfile::tempdir().unwrap();
    let unique = unique_name(dir.path());
    let experiment = format!("alias-{unique}");
    let model = format!("sepsis-alias-{unique}");
    let model_setting = format!("registry.model_name={model}");
    let sample = sample();
    let pipeline = [
        "pipeline",
        "--data",
        sample.to_str().unwrap(),
        "--json",
        "--set",
        &model_setting,
    ];
    let tracked = |args: &[&str]| stdout_json(&sepsis_tracked(dir.path(), args, &uri, &experiment));

    let first = tracked(&pipeline);
    assert_eq!(first["gate"]["promoted"], true, "{}", first["gate"]);
    let first_run = first["tracking"]["mlflow_run_id"].as_str().unwrap();
    // The same data and settings give the same model, which the gate does
    // not promote: production stays v1 and the alias stays on its model.
    let second = tracked(&pipeline);
    assert_eq!(second["registry_version"], 2);
    assert_eq!(second["gate"]["promoted"], false, "{}", second["gate"]);
    let second_run = second["tracking"]["mlflow_run_id"].as_str().unwrap();
    assert_eq!(
        mlflow_aliases(&python, &uri, &model),
        serde_json::json!({"champion": "1"})
    );

    let registry_on = |args: &[&str], server: &str| {
        let mut all = vec!["registry"];
        all.extend_from_slice(args);
        all.extend(["--set", &model_setting]);
        sepsis_tracked(dir.path(), &all, server, &experiment)
    };
    let registry = |args: &[&str]| {
        let mut all = args.to_vec();
        all.push("--json");
        stdout_json(&registry_on(&all, &uri))
    };
    let registry_text = |args: &[&str], server: &str| {
        let output = registry_on(args, server);
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let promoted = registry(&["promote", "2"]);
    assert_eq!(promoted["version"], 2);
    let alias = &promoted["mlflow_champion"];
    assert_eq!(alias["registry_version"], 2, "{alias}");
    assert_eq!(alias["mlflow"]["state"], "set", "{alias}");
    assert_eq!(alias["mlflow"]["mlflow_run_id"], second_run, "{alias}");
    assert_eq!(alias["mlflow"]["version"], "2", "{alias}");
    assert_eq!(
        mlflow_aliases(&python, &uri, &model),
        serde_json::json!({"champion": "2"})
    );
    let read = check_mlflow(&python, &uri, second_run, &model);
    assert_eq!(read["model"]["run_id"], second_run);
    assert!(read["model"]["files"]["model.txt"].is_string(), "{read}");

    let rolled_back = registry(&["rollback"]);
    assert_eq!(rolled_back["version"], 1);
    let alias = &rolled_back["mlflow_champion"]["mlflow"];
    assert_eq!(alias["mlflow_run_id"], first_run, "{alias}");
    assert_eq!(alias["version"], "1", "{alias}");
    assert_eq!(
        mlflow_aliases(&python, &uri, &model),
        serde_json::json!({"champion": "1"})
    );

    // A run without MLFLOW_TRACKING_URI stays in the local run store, so
    // MLflow has no model for v3, and the alias must not name another one.
    let third = stdout_json(&sepsis(dir.path(), &pipeline));
    assert_eq!(third["registry_version"], 3);
    let promoted = registry(&["promote", "3"]);
    let alias = &promoted["mlflow_champion"]["mlflow"];
    assert_eq!(alias["state"], "removed", "{alias}");
    assert!(
        alias["reason"]
            .as_str()
            .unwrap()
            .contains("was recorded without a tracking server"),
        "{alias}"
    );
    assert_eq!(mlflow_aliases(&python, &uri, &model), serde_json::json!({}));
    // A sync aligns the alias as well, and removing it again is no error.
    let synced = tracked(&["runs", "sync", "--json", "--set", &model_setting]);
    assert_eq!(
        synced["mlflow_champion"]["mlflow"]["state"], "removed",
        "{synced}"
    );

    // The text output names the alias too.
    let text = registry_text(&["rollback"], &uri);
    assert!(
        text.contains(&format!("rolled back {model} to v1 (was v3)")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "MLflow: {model}@champion is version 1, the model of run {first_run}"
        )),
        "{text}"
    );

    // With the server away, the pointer still moves and the command reports
    // that the alias did not move; the next sync moves it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let away = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let text = registry_text(&["promote", "2"], &away);
    assert!(
        text.contains(&format!("v2 of {model} is production (was v1)")),
        "{text}"
    );
    assert!(text.contains("NOT moved to registry v2"), "{text}");
    assert!(text.contains("`sepsis runs sync` tries again"), "{text}");
    assert_eq!(
        mlflow_aliases(&python, &uri, &model),
        serde_json::json!({"champion": "1"})
    );
    let synced = tracked(&["runs", "sync", "--json", "--set", &model_setting]);
    assert_eq!(
        synced["mlflow_champion"]["mlflow"]["state"], "set",
        "{synced}"
    );
    assert_eq!(
        mlflow_aliases(&python, &uri, &model),
        serde_json::json!({"champion": "2"})
    );

    // With the registered model deleted on the server, the next move
    // registers production's model again rather than naming a version that
    // is gone, or one that a new model gave to another run.
    let delete = "import sys\n\
                  from mlflow import MlflowClient\n\
                  MlflowClient().delete_registered_model(sys.argv[1])\n\
                  print('{}')";
    python_json(&python, &uri, &["-c", delete, &model]);
    let rolled_back = registry(&["rollback"]);
    let alias = &rolled_back["mlflow_champion"]["mlflow"];
    assert_eq!(alias["state"], "set", "{alias}");
    assert_eq!(alias["mlflow_run_id"], first_run, "{alias}");
    let read = check_mlflow(&python, &uri, first_run, &model);
    assert_eq!(read["model"]["run_id"], first_run);
}
