#!/bin/sh
# Creates the store's bucket and its layout prefixes in the compose stack's
# MinIO. docker-compose.yml runs it once, as the minio-init service in the
# minio/mc image, before `sepsis` starts. Running it again changes nothing.
#
# S3 has no folders: each prefix gets an empty `.keep` object so that it shows
# in listings before the service writes to it. The service reads only its own
# keys (manifests, version records, run records), so it never reads these.
#
# Usage: minio-init.sh
#
# Environment:
#   MINIO_ROOT_USER, MINIO_ROOT_PASSWORD  MinIO credentials (required)
#   MINIO_ENDPOINT                        S3 API address, default http://minio:9000
#   BUCKET                                bucket name, default sepsis-mlops-data
set -eu

: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set}"
endpoint="${MINIO_ENDPOINT:-http://minio:9000}"
bucket="${BUCKET:-sepsis-mlops-data}"

mc alias set store "$endpoint" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" > /dev/null
mc mb --ignore-existing "store/$bucket"

# The top-level folders of the store (`layout` in config/config.yaml).
for prefix in raw-data processed-data feature-store artifacts model-registry; do
  if ! mc stat "store/$bucket/$prefix/.keep" > /dev/null 2>&1; then
    printf '' | mc pipe "store/$bucket/$prefix/.keep" > /dev/null
  fi
done
echo "bucket $bucket is ready: raw-data/ processed-data/ feature-store/ artifacts/ model-registry/"
