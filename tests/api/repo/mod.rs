//! The repository checked against the code: the contract (specs and `generated/`), the configuration
//! reference in `docs/operations.md`, the deployment manifests under `deploy/`, and the layering of `src/`.

mod config_doc;
mod contract;
mod deploy;
mod layers;
