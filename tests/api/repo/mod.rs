//! The repository checked against the code: the contract (specs and `generated/`), the configuration
//! reference in `docs/operations.md`, the deployment manifests under `deploy/`, the layering of `src/`, and
//! the console's committed build output (`web/dist/`).

mod config_doc;
mod console;
mod contract;
mod deploy;
mod layers;
