//! Tests of the prediction service: the router in process, the server on a
//! real socket, hot swaps of the production model and training jobs. One
//! test binary, so the two models are trained once.

mod api;
mod common;
mod drift;
mod hot_swap;
mod malformed;
mod socket;
mod training;
