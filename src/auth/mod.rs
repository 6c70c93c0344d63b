//! Authentication: JWT verification with the Go service's claims (`user_id`, `roles`, `name`), roles, and
//! token minting for development tokens, tests and the load tool.

mod jwt;

pub use jwt::{AuthError, Claims, Identity, JwtKeys, MAX_TOKEN_BYTES};
