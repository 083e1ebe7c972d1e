//! The checkpoint mode every test helper that builds a `DsConfig` runs in. Test files
//! without the rest of `common` include this file alone (`#[path = "common/mode.rs"]`).

use ds_node::{CheckpointMode, DsConfig};

/// `TIERKV_TEST_CHECKPOINT_MODE=index` runs the suite on the shard's key index, `=files` on
/// range files, anything else (or nothing) in the default mode (`DsConfig::default()`).
pub fn test_checkpoint_mode() -> CheckpointMode {
    match std::env::var("TIERKV_TEST_CHECKPOINT_MODE").as_deref() {
        Ok("index") => CheckpointMode::Index,
        Ok("files") => CheckpointMode::Files,
        _ => DsConfig::default().checkpoint_mode,
    }
}
