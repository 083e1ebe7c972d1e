//! A probe's settings.

use std::time::Duration;

use net::transport::TransportConfig;

/// How a probe runs.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The probe's name, unique in the cluster and stable across restarts (1..=64 bytes); the
    /// master counts votes per name.
    pub name: String,
    /// Its zone label (1..=64 bytes).
    pub zone: String,
    /// The master's RPC address.
    pub master: String,
    /// Time between rounds. Default 1 s.
    pub interval: Duration,
    /// A ping not answered within this counts as unreachable. Default 500 ms.
    pub deadline: Duration,
    /// Pings in flight at once. Default 64.
    pub max_parallel: usize,
    /// Connections (with the cluster secret).
    pub transport: TransportConfig,
}

impl ProbeConfig {
    /// Defaults for a probe named `name` in `zone` reporting to `master`.
    pub fn new(
        name: impl Into<String>,
        zone: impl Into<String>,
        master: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            zone: zone.into(),
            master: master.into(),
            interval: Duration::from_secs(1),
            deadline: Duration::from_millis(500),
            max_parallel: 64,
            transport: TransportConfig::default(),
        }
    }
}
