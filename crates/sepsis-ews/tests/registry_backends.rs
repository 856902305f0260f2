//! The registry on every backend: memory, local disk and a real S3 API
//! server. `scripts/test` starts the S3 server (moto_server on 127.0.0.1) and
//! exports its endpoint and the bucket `SEPSIS_TEST_S3_BUCKET`.
//!
//! The central property: with many promotions racing from the same reading
//! of the pointer, exactly one wins and the registry stays readable.

use bytes::Bytes;
use sepsis_ews::config::{LayoutConfig, StorageConfig};
use sepsis_ews::registry::{Registry, RegistryError, VersionRecord};
use sepsis_ews::storage::Store;

const RACERS: u32 = 20;

fn open(uri: &str) -> Store {
    Store::open(
        &StorageConfig {
            uri: uri.to_string(),
            s3_virtual_hosted_style: false,
        },
        &LayoutConfig::default(),
    )
    .unwrap()
}

fn s3_store() -> Store {
    let bucket = std::env::var("SEPSIS_TEST_S3_BUCKET").expect(
        "SEPSIS_TEST_S3_BUCKET is not set: run the tests through scripts/test, \
         which starts a local S3 API server",
    );
    open(&format!("s3://{bucket}/registry-{}", uuid::Uuid::new_v4()))
}

fn record(run_id: &str) -> VersionRecord {
    VersionRecord {
        model_name: String::new(),
        version: 0,
        run_id: run_id.to_string(),
        created_at: "2026-12-05T00:00:00Z".into(),
        git_commit: None,
        data_digest: "d".into(),
        feature_version: "f".into(),
        feature_set_version: "causal-1".into(),
        schema_digest: "s".into(),
        metrics: Default::default(),
        files: Vec::new(),
    }
}

/// Registers `RACERS` versions at once, then promotes each of them at once,
/// all from the reading "no production yet".
async fn concurrent_promotions(store: Store) {
    let registry = Registry::new(store, "sepsis-lightgbm");

    let creations = (0..RACERS).map(|i| {
        let registry = registry.clone();
        tokio::spawn(async move {
            let model = Bytes::from(format!("model {i}"));
            registry
                .create_version(record(&format!("run-{i}")), &[("model.txt", model)])
                .await
        })
    });
    let mut numbers: Vec<u32> = futures::future::join_all(creations)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap().version)
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=RACERS).collect::<Vec<_>>());

    let promotions = (1..=RACERS).map(|version| {
        let registry = registry.clone();
        tokio::spawn(async move { (version, registry.promote(version, None, "race").await) })
    });
    let results = futures::future::join_all(promotions).await;
    let mut winners = Vec::new();
    for result in results {
        let (version, outcome) = result.unwrap();
        match outcome {
            Ok(production) => winners.push((version, production)),
            Err(RegistryError::Conflict { .. }) => {}
            Err(other) => panic!("promotion of v{version} failed unexpectedly: {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one promotion wins");
    let (winner, production) = &winners[0];
    assert_eq!(production.sequence, 1);

    // The registry reads back whole, with the winner in production.
    let now = registry.production().await.unwrap().unwrap();
    assert_eq!(now.version, *winner);
    assert_eq!(registry.versions().await.unwrap().len(), RACERS as usize);
    // Each version contains the files of the run that created it.
    let record = registry.version(*winner).await.unwrap();
    let run = record.run_id.strip_prefix("run-").unwrap();
    let model = registry.read_file(*winner, "model.txt").await.unwrap();
    assert_eq!(model, Bytes::from(format!("model {run}")));

    // A second race, from the reading "production is the winner".
    let others: Vec<u32> = (1..=RACERS).filter(|v| v != winner).collect();
    let promotions = others.iter().map(|&version| {
        let registry = registry.clone();
        let expected = Some(*winner);
        tokio::spawn(async move { registry.promote(version, expected, "second race").await })
    });
    let won = futures::future::join_all(promotions)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().is_ok())
        .count();
    assert_eq!(won, 1);
    let now = registry.production().await.unwrap().unwrap();
    assert_eq!(now.sequence, 2);
    assert_eq!(now.history, vec![*winner]);

    // Rollback returns to the first winner.
    let back = registry.rollback("test").await.unwrap();
    assert_eq!(back.version, *winner);
    assert!(back.history.is_empty());
    assert!(matches!(
        registry.rollback("test").await,
        Err(RegistryError::NothingToRollBack { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_registry_admits_one_of_twenty_concurrent_promotions() {
    concurrent_promotions(open("memory://")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_registry_admits_one_of_twenty_concurrent_promotions() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_promotions(open(&format!("file://{}", dir.path().display()))).await;
    // The local design keeps one create-only record per pointer move.
    let records = dir.path().join("model-registry/sepsis-lightgbm/production");
    assert_eq!(std::fs::read_dir(records).unwrap().count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_registry_admits_one_of_twenty_concurrent_promotions() {
    concurrent_promotions(s3_store()).await;
}

/// Separate processes of `sepsis` share nothing but the store, so the race
/// is also run across independent store handles.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_registry_race_across_store_handles() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().display());
    let registry = Registry::new(open(&uri), "m");
    for i in 0..RACERS {
        registry
            .create_version(
                record(&format!("run-{i}")),
                &[("model.txt", Bytes::from("m"))],
            )
            .await
            .unwrap();
    }
    let promotions = (1..=RACERS).map(|version| {
        let registry = Registry::new(open(&uri), "m");
        tokio::spawn(async move { registry.promote(version, None, "race").await.is_ok() })
    });
    let won = futures::future::join_all(promotions)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(won, 1);
}
