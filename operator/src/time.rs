//! Conversions between `SystemTime` and Kubernetes' `Time`.

use std::time::SystemTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A Kubernetes timestamp (second precision is what the API server keeps anyway).
pub fn to_k8s(t: SystemTime) -> Time {
    Time(Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Back to `SystemTime`.
pub fn from_k8s(t: &Timestamp) -> SystemTime {
    SystemTime::from(*t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn round_trip() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_123);
        assert_eq!(from_k8s(&to_k8s(t).0), t);
    }
}
