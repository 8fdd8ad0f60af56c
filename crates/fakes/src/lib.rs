//! Fakes (being written).
