//! Authentication and authorization: ES256 JWT verification and issuing, key files,
//! SMART on FHIR scopes enforced per interaction, and SMART Backend Services client
//! assertions.

pub mod access;
pub mod client_assertion;
pub mod jwt;
pub mod keys;
pub mod scopes;

pub use access::{Access, in_patient_compartment};
pub use jwt::{Claims, Principal, TokenSigner, TokenVerifier};
pub use scopes::{Interaction, Permission};
