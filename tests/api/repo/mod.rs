//! The repository checked against the code: the contract (specs and `generated/`), the configuration
//! reference in `docs/operations.md`, and the deployment manifests under `deploy/`.

mod config_doc;
mod contract;
mod deploy;
