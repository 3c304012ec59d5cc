//! Momentum's configuration language (`ecelerity.conf`): text → syntax
//! tree (file:line:col on every node) → typed [`policy::Policies`],
//! resolved once. `check-config` and `config eval` read the same tree.

pub mod policy;
