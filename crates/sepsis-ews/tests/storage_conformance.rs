//! One conformance suite for every storage backend: memory, local disk and a
//! real S3 API server. `scripts/test` starts the S3 server (moto_server on
//! 127.0.0.1) and exports its endpoint and the bucket `SEPSIS_TEST_S3_BUCKET`.

use bytes::Bytes;
use sepsis_ews::config::{LayoutConfig, StorageConfig};
use sepsis_ews::storage::{Area, StorageError, Store};

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

async fn conformance(store: Store) {
    // Atomic put, read back, overwrite.
    store
        .put(Area::RawData, "a/b.txt", Bytes::from_static(b"one"))
        .await
        .unwrap();
    assert_eq!(store.get(Area::RawData, "a/b.txt").await.unwrap(), "one");
    store
        .put(Area::RawData, "a/b.txt", Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(store.get(Area::RawData, "a/b.txt").await.unwrap(), "two");
    assert!(store.exists(Area::RawData, "a/b.txt").await.unwrap());
    assert!(!store.exists(Area::Artifacts, "a/b.txt").await.unwrap());

    // Create-only writes: the second one fails and changes nothing.
    store
        .put_if_absent(
            Area::ModelRegistry,
            "m/pointer-1",
            Bytes::from_static(b"v1"),
        )
        .await
        .unwrap();
    let second = store
        .put_if_absent(
            Area::ModelRegistry,
            "m/pointer-1",
            Bytes::from_static(b"v2"),
        )
        .await;
    assert!(
        matches!(second, Err(StorageError::AlreadyExists { .. })),
        "{second:?}"
    );
    assert_eq!(
        store.get(Area::ModelRegistry, "m/pointer-1").await.unwrap(),
        "v1"
    );

    // Compare-and-swap where the backend has it: a write with a stale tag
    // fails and changes nothing.
    store
        .put(Area::ModelRegistry, "m/cas", Bytes::from_static(b"a"))
        .await
        .unwrap();
    let (_, tag) = store
        .get_tagged(Area::ModelRegistry, "m/cas")
        .await
        .unwrap()
        .unwrap();
    let swapped = store
        .put_if_unchanged(
            Area::ModelRegistry,
            "m/cas",
            Bytes::from_static(b"b"),
            Some(&tag),
        )
        .await;
    if store.has_conditional_update() {
        swapped.unwrap();
        let stale = store
            .put_if_unchanged(
                Area::ModelRegistry,
                "m/cas",
                Bytes::from_static(b"c"),
                Some(&tag),
            )
            .await;
        assert!(
            matches!(stale, Err(StorageError::Changed { .. })),
            "{stale:?}"
        );
        assert_eq!(store.get(Area::ModelRegistry, "m/cas").await.unwrap(), "b");
    } else {
        assert!(
            matches!(swapped, Err(StorageError::NoConditionalUpdate { .. })),
            "{swapped:?}"
        );
    }
    let absent = store
        .get_tagged(Area::ModelRegistry, "m/none")
        .await
        .unwrap();
    assert!(absent.is_none());

    // A missing object is NotFound, and the message names its location.
    let missing = store
        .get(Area::FeatureStore, "nope.json")
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StorageError::NotFound { .. }),
        "{missing:?}"
    );
    assert!(
        missing.to_string().contains("feature-store/nope.json"),
        "{missing}"
    );

    // Listing is per area, relative to it, and sorted.
    for key in [
        "v2/manifest.json",
        "v1/manifest.json",
        "v1/features.parquet",
    ] {
        store
            .put(Area::FeatureStore, key, Bytes::from_static(b"{}"))
            .await
            .unwrap();
    }
    let keys: Vec<String> = store
        .list(Area::FeatureStore, "")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        keys,
        [
            "v1/features.parquet",
            "v1/manifest.json",
            "v2/manifest.json"
        ]
    );
    let v1: Vec<String> = store
        .list(Area::FeatureStore, "v1/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(v1, ["v1/features.parquet", "v1/manifest.json"]);

    // A streaming write larger than one multipart part, read back as a stream.
    let large: Vec<u8> = (0..7 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut writer = store.writer(Area::ProcessedData, "large.bin");
    for chunk in large.chunks(1 << 20) {
        writer.write_all(chunk).await.unwrap();
    }
    writer.finish().await.unwrap();
    let mut reader = store
        .reader(Area::ProcessedData, "large.bin")
        .await
        .unwrap();
    let mut read_back = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut read_back)
        .await
        .unwrap();
    assert_eq!(read_back.len(), large.len());
    assert!(read_back == large);

    // An aborted write leaves the earlier object untouched.
    let mut writer = store.writer(Area::ProcessedData, "large.bin");
    writer.write_all(&[0u8; 4096]).await.unwrap();
    writer.abort().await.unwrap();
    let kept = store.get(Area::ProcessedData, "large.bin").await.unwrap();
    assert_eq!(kept.len(), large.len());

    // An aborted write of a new key leaves nothing.
    let mut writer = store.writer(Area::ProcessedData, "never.bin");
    writer.write_all(&large[..(6 << 20)]).await.unwrap();
    writer.abort().await.unwrap();
    assert!(!store
        .exists(Area::ProcessedData, "never.bin")
        .await
        .unwrap());

    store.delete(Area::RawData, "a/b.txt").await.unwrap();
    assert!(!store.exists(Area::RawData, "a/b.txt").await.unwrap());
    store.delete(Area::RawData, "a/b.txt").await.unwrap();
}

#[tokio::test]
async fn memory_backend_conforms() {
    conformance(open("memory://")).await;
}

#[tokio::test]
async fn local_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().display());
    conformance(open(&uri)).await;
    // The layout is real folders on disk.
    assert!(dir.path().join("feature-store/v1/manifest.json").is_file());
    assert!(dir.path().join("processed-data/large.bin").is_file());
}

#[tokio::test]
async fn local_backend_accepts_plain_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store").display().to_string());
    store
        .put(Area::Artifacts, "x.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert!(dir.path().join("store/artifacts/x.json").is_file());
}

#[tokio::test]
async fn s3_backend_conforms() {
    let bucket = std::env::var("SEPSIS_TEST_S3_BUCKET").expect(
        "SEPSIS_TEST_S3_BUCKET is not set: run the tests through scripts/test, \
         which starts a local S3 API server",
    );
    let prefix = format!("conformance-{}", uuid::Uuid::new_v4());
    conformance(open(&format!("s3://{bucket}/{prefix}"))).await;
}

#[test]
fn unsupported_scheme_is_rejected() {
    let error = Store::open(
        &StorageConfig {
            uri: "gs://bucket".into(),
            s3_virtual_hosted_style: false,
        },
        &LayoutConfig::default(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("gs://bucket"), "{error}");
}

#[test]
fn relative_file_uri_is_rejected() {
    let error = Store::open(
        &StorageConfig {
            uri: "file://relative/dir".into(),
            s3_virtual_hosted_style: false,
        },
        &LayoutConfig::default(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("absolute path"), "{error}");
}

#[test]
fn invalid_bucket_name_is_rejected() {
    for uri in [
        "s3://bucket with space/x",
        "s3://Upper/x",
        "s3://ab",
        "s3://-dash",
        "s3://under_score",
    ] {
        let error = Store::open(
            &StorageConfig {
                uri: uri.into(),
                s3_virtual_hosted_style: false,
            },
            &LayoutConfig::default(),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("not a valid bucket name"),
            "{uri}: {error}"
        );
    }
}
