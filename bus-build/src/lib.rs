//! Build-script helper of the `bus` crate.
