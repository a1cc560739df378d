//! Procedural macros of the `bus` crate.
