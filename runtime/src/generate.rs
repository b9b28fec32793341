//! Generation loops: `generate_with_static_cache` (prefill once, then one token per step through the
//! static cache) and `generate` (the seed's no-cache loop: recompute the whole sequence every step).
