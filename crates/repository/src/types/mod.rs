//! The crate's types, apart from the readers that fill them: a model's `config.toml`
//! ([`config`], with its processing tables in [`processing`]), what the readers return
//! ([`read`]), and the repository's layout ([`layout`]). Nothing here imports a reader, so the
//! readers depend on the types and never the other way round.

pub(crate) mod config;
pub(crate) mod layout;
pub mod processing;
pub(crate) mod read;
pub mod traffic;
