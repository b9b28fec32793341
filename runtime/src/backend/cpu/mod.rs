//! The CPU backend: f32 compute, f32/f16/bf16 weight storage, multithreaded; the numerical reference.
