use super::*;

fn record() -> VersionRecord {
    VersionRecord {
        model_name: String::new(),
        version: 0,
        run_id: "run".into(),
        created_at: "2026-12-05T00:00:00Z".into(),
        git_commit: Some("abc".into()),
        data_digest: "d".into(),
        feature_version: "f".into(),
        feature_set_version: "causal-1".into(),
        schema_digest: "s".into(),
        metrics: Default::default(),
        files: Vec::new(),
    }
}

#[test]
fn versions_parse_with_or_without_v() {
    assert_eq!(parse_version("v3").unwrap(), 3);
    assert_eq!(parse_version("12").unwrap(), 12);
    for bad in ["v0", "", "v", "x1", "-1", "+2", "v1.5", "1 2"] {
        assert!(
            matches!(parse_version(bad), Err(RegistryError::BadVersion { .. })),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn version_records_files_and_digests() {
    let registry = Registry::new(Store::in_memory(), "m");
    let created = registry
        .create_version(record(), &[("model.txt", Bytes::from("trees"))])
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.model_name, "m");
    assert_eq!(created.files[0].sha256, sha256_hex(b"trees"));
    assert_eq!(registry.version(1).await.unwrap(), created);
    assert_eq!(
        registry.read_file(1, "model.txt").await.unwrap(),
        Bytes::from("trees")
    );
    let second = registry
        .create_version(record(), &[("model.txt", Bytes::from("more trees"))])
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(registry.versions().await.unwrap().len(), 2);
}

#[tokio::test]
async fn unfinished_version_is_skipped() {
    let store = Store::in_memory();
    let registry = Registry::new(store.clone(), "m");
    // A run that stopped after claiming v1 and writing its model.
    store
        .put_if_absent(Area::ModelRegistry, "m/v1/claim.json", Bytes::from("{}"))
        .await
        .unwrap();
    store
        .put_if_absent(Area::ModelRegistry, "m/v1/model.txt", Bytes::from("x"))
        .await
        .unwrap();
    assert!(registry.versions().await.unwrap().is_empty());
    assert!(matches!(
        registry.promote(1, None, "r").await,
        Err(RegistryError::NoSuchVersion { version: 1, .. })
    ));
    let next = registry.create_version(record(), &[]).await.unwrap();
    assert_eq!(next.version, 2);
}

#[tokio::test]
async fn version_changed_file_is_detected() {
    let store = Store::in_memory();
    let registry = Registry::new(store.clone(), "m");
    registry
        .create_version(record(), &[("model.txt", Bytes::from("trees"))])
        .await
        .unwrap();
    store
        .put(Area::ModelRegistry, "m/v1/model.txt", Bytes::from("other"))
        .await
        .unwrap();
    let error = registry.read_file(1, "model.txt").await.unwrap_err();
    assert!(error.to_string().contains("SHA-256"), "{error}");
}

#[tokio::test]
async fn promotion_checks_the_expected_production() {
    let registry = Registry::new(Store::in_memory(), "m");
    for _ in 0..3 {
        registry.create_version(record(), &[]).await.unwrap();
    }
    registry.promote(1, None, "first").await.unwrap();
    // A caller that believes there is no production yet is refused.
    let error = registry.promote(2, None, "stale").await.unwrap_err();
    assert!(error.to_string().contains("production is v1"), "{error}");
    registry.promote(2, Some(1), "better").await.unwrap();
    registry.promote(3, Some(2), "better still").await.unwrap();
    let now = registry.production().await.unwrap().unwrap();
    assert_eq!((now.version, now.sequence), (3, 3));
    assert_eq!(now.history, vec![1, 2]);
    let back = registry.rollback("bad").await.unwrap();
    assert_eq!((back.version, back.action), (2, PointerAction::Rollback));
    // Promoting an earlier production version again does not list it twice.
    let again = registry.promote(1, Some(2), "again").await.unwrap();
    assert_eq!(again.history, vec![2]);
}

#[tokio::test]
async fn rollback_without_production_is_refused() {
    let registry = Registry::new(Store::in_memory(), "m");
    assert!(matches!(
        registry.rollback("r").await,
        Err(RegistryError::NoProduction { .. })
    ));
    assert!(matches!(
        registry.promote(1, None, "r").await,
        Err(RegistryError::NoSuchVersion { .. })
    ));
}

#[tokio::test]
async fn corrupt_pointer_names_location() {
    let store = Store::in_memory();
    let registry = Registry::new(store.clone(), "m");
    store
        .put(Area::ModelRegistry, "m/production.json", Bytes::from("{"))
        .await
        .unwrap();
    let error = registry.production().await.unwrap_err();
    assert!(error.to_string().contains("m/production.json"), "{error}");
}

/// Two writers read the same pointer, then both try to move it: the second
/// write must fail whatever the timing, on both pointer designs.
async fn check_stale_writer_rejected(store: Store) {
    let registry = Registry::new(store, "m");
    for _ in 0..3 {
        registry.create_version(record(), &[]).await.unwrap();
    }
    for expected in [None, Some(1)] {
        let (_, first_token) = registry.read_pointer().await.unwrap();
        let (_, second_token) = registry.read_pointer().await.unwrap();
        let sequence = expected.map_or(1, |_| 2);
        let pointer = |version| Production {
            sequence,
            version,
            history: expected.into_iter().collect(),
            action: PointerAction::Promote,
            reason: "race".into(),
            changed_at: "now".into(),
        };
        let next = expected.map_or(1, |v| v + 1);
        registry
            .write_pointer(&pointer(next), &first_token)
            .await
            .unwrap();
        let error = registry
            .write_pointer(&pointer(3), &second_token)
            .await
            .unwrap_err();
        assert!(matches!(error, RegistryError::Conflict { .. }), "{error}");
        assert_eq!(registry.production().await.unwrap().unwrap().version, next);
    }
}

#[tokio::test]
async fn pointer_cas_rejects_stale_writer() {
    check_stale_writer_rejected(Store::in_memory()).await;
}

#[tokio::test]
async fn pointer_records_reject_stale_writer() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::StorageConfig {
        uri: dir.path().display().to_string(),
        s3_virtual_hosted_style: false,
    };
    let store = Store::open(&config, &crate::config::LayoutConfig::default()).unwrap();
    assert!(!store.has_conditional_update());
    check_stale_writer_rejected(store).await;
}
