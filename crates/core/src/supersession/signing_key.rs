//! The key an agent signs supersessions with.

use std::fmt;

use ed25519_dalek::Signer;
use rand::RngCore;

use super::{AgentKey, Signature};

/// An agent's Ed25519 signing key (its secret half). Our own type, so that
/// stowage's public API does not tie its semver to the signature library
/// it uses underneath.
///
/// `Debug` never shows the secret.
///
/// ```
/// use stowage_core::{AgentKey, SigningKey};
/// let key = SigningKey::from_bytes(&[7; 32]);
/// assert_eq!(AgentKey::of(&key), key.agent_key());
/// assert_eq!(SigningKey::from_bytes(&key.to_bytes()).agent_key(), key.agent_key());
/// assert_ne!(SigningKey::generate().agent_key(), key.agent_key());
/// ```
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// The key whose 32-byte secret is `secret` (RFC 8032).
    pub fn from_bytes(secret: &[u8; 32]) -> Self {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(secret))
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Self::from_bytes(&secret)
    }

    /// The 32-byte secret, to store the key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key that verifies this key's signatures.
    pub fn agent_key(&self) -> AgentKey {
        AgentKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SigningKey")
            .field(&self.agent_key())
            .finish_non_exhaustive()
    }
}
