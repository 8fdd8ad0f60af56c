//! The in-memory backend (scaffolding; being written).
use stowage_core::{Error, Result, StoreEnv, Stores};

pub(crate) async fn open_url(_url: &url::Url, _env: StoreEnv) -> Result<Stores> {
    Err(Error::unsupported("memory backend is being written"))
}
