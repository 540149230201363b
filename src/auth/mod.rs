//! Authentication and authorization: ES256 JWT verification and issuing, key files and
//! rotation, tokens of external OpenID Connect issuers,
//! SMART on FHIR scopes enforced per interaction, and SMART Backend Services client
//! assertions with keys registered inline or fetched from the client's JWKS URL.

pub mod access;
pub mod client_assertion;
pub mod jwt;
pub mod keys;
pub mod oidc;
pub mod remote;
pub mod scopes;

pub use access::{Access, in_patient_compartment};
pub use jwt::{Claims, Principal, TokenSigner, TokenVerifier};
pub use scopes::{Interaction, Permission};
