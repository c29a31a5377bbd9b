//! The Owl server's roles wired together: `owl up` runs them all in one process, `owl collector`
//! and `owl query-api` one each. The `owl` binary only parses arguments and calls into here; the
//! end-to-end tests call the same functions.

pub mod demo;
pub mod jobs;
pub mod up;
