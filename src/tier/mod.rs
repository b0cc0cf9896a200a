//! Tiering of sealed segments to object storage.
