//! `docs/config/ds.toml` shows every key at its default: parsing it must give
//! `DsConfig::default()` (STYLE §8: the docs and `Default` must not drift).
#![allow(clippy::unwrap_used)]

use ds_node::DsConfig;

#[test]
fn config_template_parses_to_the_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/config/ds.toml");
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(DsConfig::from_toml(&text).unwrap(), DsConfig::default());
}
