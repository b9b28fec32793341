//! A timeline of the decode step for tuning runs (`LLMFORGE_DECODE_TRACE=1`, read when the backend is
//! made; the kernels always take the marks' buffer, null when off): every decode launch gets a slot,
//! and the first thread of each of its blocks records the GPU's global timer at entry (minimum over
//! blocks), once its predecessor is done (`griddepcontrol.wait` returned; maximum) and at exit
//! (maximum). After each traced decode step
//! the slots are read back and summed per kernel kind; dropping the backend prints, per kind, the mean
//! time blocks waited for the predecessor, the time from the last wait to the last exit, and the gap
//! from the predecessor's last exit to this kernel's first entry (negative: they overlapped). Off by
//! default: the kernels then skip the marks (a null buffer) and nothing is read back.

use super::device::Gpu;
use super::memory::{DevBuf, DevSliceMut, Mark};
use crate::Result;
use std::sync::OnceLock;

/// Marks per slot: entry (min), waited (max), exit (max), as u64 nanoseconds.
const MARKS: usize = 3;

pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("LLMFORGE_DECODE_TRACE").is_ok_and(|v| v == "1"))
}

/// The kinds of decode launches, in step order (`Kind as usize` indexes the sums).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Embed,
    Qkv,
    Attention,
    O,
    Up,
    Down,
    LmHead,
}

const KINDS: [(Kind, &str); 7] = [
    (Kind::Embed, "embed"),
    (Kind::Qkv, "dec_qkv"),
    (Kind::Attention, "attn_decode"),
    (Kind::O, "dec_o"),
    (Kind::Up, "dec_up"),
    (Kind::Down, "dec_down"),
    (Kind::LmHead, "dec_lm"),
];

/// Slots of one step for a model with `layers` layers: embed, 5 per layer, lm_head.
pub fn slots(layers: usize) -> usize {
    2 + 5 * layers
}

/// The launches of one layer, in order.
const LAYER: [Kind; 5] = [Kind::Qkv, Kind::Attention, Kind::O, Kind::Up, Kind::Down];

/// The slot of launch `kind` of `layer` (the layer is ignored for the embedding; for lm_head it is
/// the number of layers).
pub fn slot(kind: Kind, layer: usize) -> usize {
    match kind {
        Kind::Embed => 0,
        Kind::LmHead => 1 + 5 * layer,
        k => 1 + 5 * layer + LAYER.iter().position(|&l| l == k).unwrap_or(0),
    }
}

/// The kind of launch `slot` of a step.
pub fn kind_of(slot: usize, layers: usize) -> Kind {
    match slot {
        0 => Kind::Embed,
        s if s > 5 * layers => Kind::LmHead,
        s => LAYER[(s - 1) % 5],
    }
}

/// The device buffer of one step's marks and the timeline they add up to.
pub struct Trace {
    buf: DevBuf<Mark>,
    pub timeline: Timeline,
}

impl Trace {
    pub fn new(gpu: &Gpu, layers: usize) -> Result<Trace> {
        Ok(Trace {
            buf: gpu.zeros(&[slots(layers), MARKS], "decode trace")?,
            timeline: Timeline::new(layers),
        })
    }

    /// The marks, as the decode kernels write them.
    pub fn marks(&self) -> DevSliceMut<'_, Mark> {
        self.buf.view_mut()
    }

    /// Before a traced step: entries to the maximum (they are lowered by `atomicMin`), the rest to 0.
    pub fn reset(&mut self, gpu: &Gpu) -> Result<()> {
        let init: Vec<u64> = (0..slots(self.timeline.layers))
            .flat_map(|_| [u64::MAX, 0, 0])
            .collect();
        gpu.write(&mut self.buf, &init, "decode trace")
    }

    /// After a traced step (the stream synchronised): add its marks to the timeline.
    pub fn collect(&mut self, gpu: &Gpu) -> Result<()> {
        let mut marks = vec![0u64; slots(self.timeline.layers) * MARKS];
        gpu.read(&self.buf, &mut marks, "decode trace")?;
        self.timeline.add(&marks);
        Ok(())
    }
}

/// Per-kind sums over traced steps.
pub struct Timeline {
    layers: usize,
    /// Per kind: launches, waited (entry → last wait), ran (last wait → last exit), gap (previous
    /// exit → entry), in nanoseconds.
    sums: [(u64, i64, i64, i64); 7],
    steps: u64,
    step_ns: i64,
}

impl Timeline {
    pub fn new(layers: usize) -> Timeline {
        Timeline {
            layers,
            sums: [(0, 0, 0, 0); 7],
            steps: 0,
            step_ns: 0,
        }
    }

    /// One step's marks, `[slot][entry, waited, exit]`.
    pub fn add(&mut self, marks: &[u64]) {
        let n = slots(self.layers);
        // A slot no block marked (a launch that did not run) keeps its entry at u64::MAX: skip the step.
        if marks.len() < n * MARKS || marks.chunks_exact(MARKS).any(|m| m[0] == u64::MAX) {
            return;
        }
        let at = |s: usize, i: usize| marks[s * MARKS + i] as i64;
        for s in 0..n {
            let k = kind_of(s, self.layers) as usize;
            let gap = if s == 0 { 0 } else { at(s, 0) - at(s - 1, 2) };
            let e = &mut self.sums[k];
            e.0 += 1;
            e.1 += at(s, 1) - at(s, 0);
            e.2 += at(s, 2) - at(s, 1);
            e.3 += gap;
        }
        self.steps += 1;
        self.step_ns += at(n - 1, 2) - at(0, 0);
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    pub fn report(&self) -> String {
        let mut out = format!(
            "decode trace: {} steps, mean step {:.1} us (first entry to last exit)\n\
             kernel        launches  waited us  ran us  gap before us\n",
            self.steps,
            self.step_ns as f64 / self.steps.max(1) as f64 / 1e3
        );
        for (kind, name) in KINDS {
            let (n, w, r, g) = self.sums[kind as usize];
            let d = n.max(1) as f64 * 1e3;
            out += &format!(
                "{name:13} {n:9} {:10.2} {:7.2} {:14.2}\n",
                w as f64 / d,
                r as f64 / d,
                g as f64 / d
            );
        }
        out
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if self.timeline.steps() > 0 {
            eprint!("{}", self.timeline.report());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_step_order() {
        assert_eq!(slots(2), 12);
        let kinds: Vec<Kind> = (0..slots(2)).map(|s| kind_of(s, 2)).collect();
        use Kind::*;
        assert_eq!(
            kinds,
            [
                Embed, Qkv, Attention, O, Up, Down, Qkv, Attention, O, Up, Down, LmHead
            ]
        );
    }

    #[test]
    fn a_step_adds_waits_runs_and_gaps_per_kind() {
        let mut t = Timeline::new(1);
        // embed, qkv, attn, o, up, down, lm: entry, waited, exit (ns).
        let marks = [
            [0, 100, 1_000],
            [900, 1_100, 5_000],
            [4_000, 5_100, 6_000],
            [5_500, 6_100, 9_000],
            [9_500, 9_600, 20_000],
            [19_000, 20_100, 30_000],
            [29_000, 30_100, 40_000],
        ];
        let flat: Vec<u64> = marks.iter().flatten().copied().collect();
        t.add(&flat);
        assert_eq!(t.steps(), 1);
        assert_eq!(t.sums[Kind::Qkv as usize], (1, 200, 3_900, -100));
        assert_eq!(t.sums[Kind::Up as usize], (1, 100, 10_400, 500));
        assert_eq!(t.step_ns, 40_000);
        // A launch that left no mark spoils the step: it is skipped.
        let mut broken = flat.clone();
        broken[3 * 3] = u64::MAX;
        t.add(&broken);
        assert_eq!(t.steps(), 1);
        assert!(t.report().contains("dec_up"));
    }
}
