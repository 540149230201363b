//! Authentication and authorization: ES256 JWT verification and issuing, key files, and
//! SMART on FHIR scopes enforced per interaction.

pub mod jwt;
pub mod keys;
pub mod scopes;

pub use jwt::{Claims, Principal, TokenVerifier};
pub use scopes::{Interaction, Permission};
