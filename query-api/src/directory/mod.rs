//! The directory: users, roles and organizations. Each function takes what its handler read from
//! the request (the body or query as typed input), the acting principal and the state; it
//! validates every field at once, applies the rules (who may act on whom is [`crate::authz`]'s),
//! stores, and returns what the database then holds. The handlers of `http/` only read requests
//! and render answers.

pub(crate) mod orgs;
pub(crate) mod roles;
pub(crate) mod users;

use crate::envelope::Failure;

/// What a create did. Sending the same create again (a retry after a lost answer, a setup
/// script run twice) finds the resource as that request would have made it: the second answer
/// is the resource, not a conflict. The same code with anything else different is a conflict.
#[derive(Debug)]
pub(crate) enum Creation<T> {
    /// Stored now.
    Created(T),
    /// Already stored exactly as asked.
    Existing(T),
}

/// A row read back right after its insert: the answer shows what the database holds (defaults,
/// joined names). One that cannot be read back is a server error.
fn inserted<T>(id: i64, what: &str, found: Option<T>) -> Result<T, Failure> {
    found.ok_or_else(|| Failure::internal(anyhow::anyhow!("{what} {id} vanished right after its insert")))
}
