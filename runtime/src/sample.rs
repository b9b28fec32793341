//! Token selection: greedy argmax, or temperature / top-k / top-p sampling from a seeded generator
//! (splitmix64, so a seed reproduces the same tokens on every platform). Applied in transformers'
//! order: temperature, then top-k, then top-p.

use crate::{Error, Result};

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

impl Sampling {
    pub fn greedy() -> Self {
        Sampling::default()
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// `temperature` finite and ≥ 0, `top_k ≥ 1`, `top_p` in (0, 1].
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(Error::invalid(format!(
                "temperature must be finite and >= 0, got {}",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(Error::invalid("top_k must be at least 1, got 0"));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(Error::invalid(format!("top_p must be in (0, 1], got {p}")));
        }
        Ok(())
    }
}

/// Stateful sampler (owns the random generator state).
#[derive(Debug, Clone)]
pub struct Sampler {
    pub params: Sampling,
    state: u64,
    /// Reused (index, value) buffer.
    work: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler without parameter validation (see [`Sampler::try_new`]).
    pub fn new(params: Sampling) -> Self {
        Sampler {
            params,
            state: params.seed,
            work: Vec::new(),
        }
    }

    /// A sampler for validated parameters.
    pub fn try_new(params: Sampling) -> Result<Self> {
        params.validate()?;
        Ok(Sampler::new(params))
    }

    /// Whether this sampler always picks the argmax (a GPU backend then selects on the device).
    pub fn is_greedy(&self) -> bool {
        self.params.is_greedy()
    }

    /// The next uniform draw in [0, 1) (splitmix64): what `sample` takes for one row, and what a
    /// backend sampling on the device passes it (one draw per row, rows in order).
    pub fn draw(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Pick a token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let p = self.params;
        if p.is_greedy() || logits.is_empty() {
            return argmax(logits);
        }
        let inv_t = 1.0 / p.temperature;
        self.work.clear();
        self.work.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &x)| (i as u32, x * inv_t)),
        );
        // Descending by value, ascending id among equals: a strict order (ids are unique), so the
        // first k after a selection are the first k of a full sort.
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if let Some(k) = p.top_k.map(|k| k.max(1))
            && k < self.work.len()
        {
            self.work.select_nth_unstable_by(k - 1, order);
            self.work.truncate(k);
        }
        self.work.sort_by(order);
        let max = self.work[0].1;
        let mut total = 0.0f64;
        for e in self.work.iter_mut() {
            e.1 = ((e.1 - max) as f64).exp() as f32;
            total += e.1 as f64;
        }
        if let Some(top_p) = p.top_p {
            // Keep the smallest prefix whose probability reaches top_p (at least one token).
            let mut cum = 0.0f64;
            let mut keep = self.work.len();
            for (i, e) in self.work.iter().enumerate() {
                cum += e.1 as f64 / total;
                if cum >= top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            self.work.truncate(keep);
            total = self.work.iter().map(|e| e.1 as f64).sum();
        }
        // One draw per row, also when the weights are degenerate (NaN, infinite or all zero: then the
        // first in order), so later rows and steps see the same stream as a device sampler.
        let draw = self.draw();
        if !(total.is_finite() && total > 0.0) {
            return self.work[0].0;
        }
        let mut u = draw * total;
        for e in &self.work {
            u -= e.1 as f64;
            if u < 0.0 {
                return e.0;
            }
        }
        self.work[self.work.len() - 1].0
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The sampler as first written: a full sort, then the first k.
    fn sample_by_full_sort(p: Sampling, state: &mut Sampler, logits: &[f32]) -> u32 {
        let inv_t = 1.0 / p.temperature;
        let mut work: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &x)| (i as u32, x * inv_t))
            .collect();
        work.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(k) = p.top_k {
            work.truncate(k.max(1));
        }
        let max = work[0].1;
        let mut total = 0.0f64;
        for e in work.iter_mut() {
            e.1 = ((e.1 - max) as f64).exp() as f32;
            total += e.1 as f64;
        }
        if let Some(top_p) = p.top_p {
            let mut cum = 0.0f64;
            let mut keep = work.len();
            for (i, e) in work.iter().enumerate() {
                cum += e.1 as f64 / total;
                if cum >= top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            work.truncate(keep);
            total = work.iter().map(|e| e.1 as f64).sum();
        }
        let draw = state.draw();
        if !(total.is_finite() && total > 0.0) {
            return work[0].0;
        }
        let mut u = draw * total;
        for e in &work {
            u -= e.1 as f64;
            if u < 0.0 {
                return e.0;
            }
        }
        work[work.len() - 1].0
    }

    #[test]
    fn top_k_by_selection_picks_what_a_full_sort_picks() {
        // Values in 1/4 steps (many ties, so the id order among equals matters), some negative.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) % 64) as f32 / 4.0 - 8.0
        };
        let logits: Vec<f32> = (0..3000).map(|_| next()).collect();
        for (top_k, top_p) in [
            (Some(1), None),
            (Some(40), Some(0.9)),
            (Some(2999), None),
            (Some(5000), Some(0.5)),
            (None, Some(0.8)),
        ] {
            let p = Sampling {
                temperature: 0.7,
                top_k,
                top_p,
                seed: 11,
            };
            let (mut fast, mut reference) = (Sampler::new(p), Sampler::new(p));
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..200 {
                let want = sample_by_full_sort(p, &mut reference, &logits);
                assert_eq!(fast.sample(&logits), want, "{p:?}");
                seen.insert(want);
            }
            assert!(top_k == Some(1) || seen.len() > 1, "{p:?}: never varies");
        }
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[2.0]), 0);
    }

    #[test]
    fn validation_names_the_bad_value() {
        let bad = [
            Sampling {
                temperature: -1.0,
                ..Sampling::default()
            },
            Sampling {
                temperature: f32::NAN,
                ..Sampling::default()
            },
            Sampling {
                temperature: f32::INFINITY,
                ..Sampling::default()
            },
            Sampling {
                top_k: Some(0),
                ..Sampling::default()
            },
            Sampling {
                top_p: Some(0.0),
                ..Sampling::default()
            },
            Sampling {
                top_p: Some(1.5),
                ..Sampling::default()
            },
        ];
        for s in bad {
            assert!(Sampler::try_new(s).is_err(), "{s:?} accepted");
        }
        assert!(
            Sampler::try_new(Sampling {
                temperature: 0.7,
                top_k: Some(5),
                top_p: Some(0.9),
                seed: 1
            })
            .is_ok()
        );
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        let logits = [0.1, 2.0, 1.9, -3.0, 2.0];
        for params in [
            Sampling {
                temperature: 1.0,
                top_k: Some(1),
                top_p: None,
                seed: 3,
            },
            Sampling {
                temperature: 1.0,
                top_k: None,
                top_p: Some(1e-6),
                seed: 4,
            },
        ] {
            let mut s = Sampler::new(params);
            for _ in 0..50 {
                assert_eq!(s.sample(&logits), 1);
            }
        }
    }

    #[test]
    fn sampling_follows_the_softmax_and_is_seeded() {
        let logits = [0.0f32, (2.0f32).ln(), (3.0f32).ln(), -1e30];
        let params = Sampling {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed: 42,
        };
        let mut s = Sampler::new(params);
        let n = 60_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[s.sample(&logits) as usize] += 1;
        }
        assert_eq!(counts[3], 0);
        for (i, want) in [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0].iter().enumerate() {
            let got = counts[i] as f64 / n as f64;
            // 5 standard deviations of a binomial proportion at n = 60000 is < 0.01.
            assert!((got - want).abs() < 0.01, "token {i}: {got} vs {want}");
        }
        let draw = |seed| {
            let mut s = Sampler::new(Sampling { seed, ..params });
            (0..20).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_p_keeps_the_smallest_sufficient_prefix() {
        // Probabilities 0.5, 0.3, 0.2: top_p 0.7 keeps the first two only.
        let logits = [(0.5f32).ln(), (0.3f32).ln(), (0.2f32).ln()];
        let mut s = Sampler::new(Sampling {
            temperature: 1.0,
            top_k: None,
            top_p: Some(0.7),
            seed: 9,
        });
        let mut seen = [false; 3];
        for _ in 0..2000 {
            seen[s.sample(&logits) as usize] = true;
        }
        assert_eq!(seen, [true, true, false]);
    }
}
