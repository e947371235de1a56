//! hfbreaker: active probing of Hugging Face inference endpoints through
//! circuit breakers, with fallback routes and Prometheus metrics.

pub mod baseline;
pub mod breaker;
pub mod classify;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod gateway;
pub mod history;
pub mod http;
mod label;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod probe;
pub mod route;
pub mod schedule;
pub mod secret;
pub mod signal;
pub mod sim;
pub mod storage;
pub mod tier;
