//! The CQC event schema.
