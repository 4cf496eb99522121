//! Password checks that reuse their argon2 memory.
//!
//! argon2id's standard cost needs 19 MiB of working memory per check. Allocated afresh each
//! time, that memory ends up in the allocator's per-thread arenas and is not given back: 20
//! logins on 20 pool threads left ~350 MiB behind. Here a check borrows a block from a small
//! pool and returns it, so the memory held is (concurrent checks) × (one block), and the
//! callers bound the concurrent checks (see [`crate::service::session::FileService`]).

use std::sync::{Mutex, PoisonError};

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Reusable argon2 working memory; one block per check running at that moment.
#[derive(Debug, Default)]
pub(crate) struct MemoryPool {
    free: Mutex<Vec<Vec<Block>>>,
}

impl MemoryPool {
    /// Whether `password` matches the PHC string `phc`, computed with its own parameters in
    /// pooled memory. A malformed hash matches nothing.
    pub(crate) fn verify(&self, password: &[u8], phc: &str) -> bool {
        let Some((argon, salt, expected)) = parse(phc) else {
            return false;
        };
        let mut out = vec![0u8; expected.len()];
        let blocks = argon.params().block_count();
        let mut memory = self.take(blocks);
        let hashed = argon
            .hash_password_into_with_memory(password, &salt, &mut out, &mut memory[..blocks])
            .is_ok();
        self.give(memory);
        // `Output`'s equality is constant-time.
        hashed && Output::new(&out).is_ok_and(|out| out == expected)
    }

    /// Hashes `password` with `argon` and `salt` into a PHC string, in pooled memory.
    pub(crate) fn hash(&self, argon: &Argon2<'_>, password: &[u8], salt: &[u8]) -> Option<String> {
        let len = argon
            .params()
            .output_len()
            .unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let mut out = vec![0u8; len];
        let blocks = argon.params().block_count();
        let mut memory = self.take(blocks);
        let hashed =
            argon.hash_password_into_with_memory(password, salt, &mut out, &mut memory[..blocks]);
        self.give(memory);
        hashed.ok()?;
        let salt = argon2::password_hash::phc::Salt::new(salt).ok()?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: argon.params().try_into().ok()?,
            salt: Some(salt),
            hash: Some(Output::new(&out).ok()?),
        };
        Some(hash.to_string())
    }

    /// A block of at least `blocks` argon2 blocks: a pooled one, grown if needed, or new.
    fn take(&self, blocks: usize) -> Vec<Block> {
        let pooled = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut memory = pooled.unwrap_or_default();
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        memory
    }

    fn give(&self, memory: Vec<Block>) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(memory);
    }

    /// Blocks of memory kept for reuse (one per check that ever ran at the same time).
    #[cfg(test)]
    pub(crate) fn pooled(&self) -> usize {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The hasher, salt and expected output of a PHC string.
fn parse(phc: &str) -> Option<(Argon2<'static>, Vec<u8>, Output)> {
    let hash = PasswordHash::new(phc).ok()?;
    let algorithm = Algorithm::try_from(hash.algorithm.as_str()).ok()?;
    let version = match hash.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(&hash).ok()?;
    let salt = hash.salt?.as_ref().to_vec();
    let expected = hash.hash?;
    Some((Argon2::new(algorithm, version, params), salt, expected))
}
