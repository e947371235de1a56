//! Inference Endpoints management API: `GET {url}/v2/endpoint/{namespace}/{name}`.
//! Reads `status.state` without sending the endpoint any traffic, so a
//! scaled-to-zero endpoint stays asleep.

use reqwest::Method;
use serde::Deserialize;

use super::{Check, CheckError, Spec, bad, join};
use crate::classify::Reason;
use crate::config::EndpointConfig;

pub(super) fn spec(ep: &EndpointConfig) -> Spec {
    let ns = ep.namespace.as_deref().unwrap_or_default();
    let name = ep.endpoint_name.as_deref().unwrap_or_default();
    Spec {
        method: Method::GET,
        url: join(&ep.url, &format!("/v2/endpoint/{ns}/{name}")),
        body: None,
        check: Check::EndpointStatus,
    }
}

#[derive(Deserialize)]
struct Endpoint {
    status: Status,
}

#[derive(Deserialize)]
struct Status {
    state: String,
}

pub(super) fn check(body: &[u8]) -> Result<(), CheckError> {
    let ep: Endpoint =
        serde_json::from_slice(body).map_err(|_| bad("status: no status.state in the answer"))?;
    let reason = match ep.status.state.as_str() {
        "running" => return Ok(()),
        "pending" | "initializing" | "updating" => Reason::ModelLoading,
        "scaledToZero" => Reason::ScaledToZero,
        "paused" => Reason::Paused,
        "failed" | "updateFailed" => Reason::EndpointFailed,
        _ => return Err(bad("status: unknown endpoint state")),
    };
    Err(CheckError {
        reason,
        detail: format!("endpoint state {}", ep.status.state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(s: &str) -> Result<(), Reason> {
        check(format!(r#"{{"name":"x","status":{{"state":"{s}","readyReplica":0}}}}"#).as_bytes())
            .map_err(|e| e.reason)
    }

    #[test]
    fn maps_every_documented_state() {
        assert_eq!(state("running"), Ok(()));
        for s in ["pending", "initializing", "updating"] {
            assert_eq!(state(s), Err(Reason::ModelLoading), "{s}");
        }
        assert_eq!(state("scaledToZero"), Err(Reason::ScaledToZero));
        assert_eq!(state("paused"), Err(Reason::Paused));
        assert_eq!(state("failed"), Err(Reason::EndpointFailed));
        assert_eq!(state("updateFailed"), Err(Reason::EndpointFailed));
        assert_eq!(state("weird"), Err(Reason::BadResponse));
        assert!(check(b"{}").is_err());
    }
}
