//! sepsis-ews: a sepsis early-warning pipeline over object storage.
//!
//! Hourly ICU data is imported into `raw-data/` and parsed into a typed
//! snapshot in `processed-data/`. The snapshot is validated against the column
//! schema and turned into a versioned feature table in `feature-store/`, which
//! trains and evaluates a LightGBM model whose files go to `artifacts/`.
//! ARCHITECTURE.md gives the code map and the invariants.

pub mod assess;
pub mod calibration;
pub mod config;
pub mod drift;
pub mod ensemble;
pub mod evaluate;
pub mod experiment;
pub mod failpoint;
pub mod feature_store;
pub mod features;
pub mod gate;
pub mod import;
pub mod ingest;
pub mod interval;
pub mod lightgbm;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod policy;
pub mod progress;
pub mod registry;
pub mod report;
pub mod schema;
pub mod scoring;
pub mod stays;
pub mod storage;
pub mod table;
#[cfg(test)]
mod test_support;
pub mod tracking;
pub mod train;
pub mod utility;
pub mod validate;
