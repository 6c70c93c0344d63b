//! The configuration kit: the pieces every settings section is built with — the environment snapshot,
//! the error type, Go duration parsing, serde deserialisers, environment-over-file overlays and value
//! checks.
//!
//! It is a leaf: it imports nothing from the rest of the crate. The modules that are configured (`llm`,
//! `notify`, `store`) own their settings types and validation and use only this kit; `config` assembles
//! them into the server's settings. Dependencies therefore run `config -> llm/notify/store -> settings_kit`
//! and never back.

mod checks;
pub mod de;
mod duration;
mod env;
mod error;
mod hygiene;
mod overlay;

pub use checks::{at_most, ensure, http_url, is_loopback, no_placeholder, non_empty, positive};
pub use duration::parse_duration;
pub use env::EnvVars;
pub use error::ConfigError;
pub use hygiene::{PLACEHOLDER_MARKERS, contains_placeholder, create_private_dir};
pub use overlay::{
    count_setting, duration_setting, env_duration, env_list, env_parse_into, env_parsed,
    env_secret, env_string, list_setting, split_list, var_or,
};
