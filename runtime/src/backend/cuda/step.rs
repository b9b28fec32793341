//! Running one engine call: input upload, scratch sizing, and the decode CUDA graph (captured on the
//! first step of a kind, replayed afterwards; see `graph.rs` for when a graph is reused).

use super::device::cuda_err;
use super::forward::{self, Call, LayerKv, Model};
use super::gemm::Lt;
use super::graph::{GraphCache, GraphKey};
use super::scratch::Scratch;
use super::{CudaBackend, device_cache, missing_scratch};
use crate::backend_error::BackendError;
use crate::cache::LayerKvMut;
use crate::step::{CacheMode, StepInputs};
use crate::{Error, Result};
use cudarc::driver::CudaGraph;

impl CudaBackend {
    /// The shared parts of one call, plus the mutable ones, borrowed disjointly.
    pub(super) fn split(
        &mut self,
    ) -> (
        Model<'_>,
        &mut Lt,
        &mut Option<Scratch>,
        &mut GraphCache<CudaGraph>,
    ) {
        let CudaBackend {
            spec,
            options,
            gpu,
            kernels,
            lt,
            choices,
            layer,
            layout,
            mats,
            unpacked,
            vecs,
            positions,
            rope,
            scratch,
            graphs,
            pdl,
            trace,
            ..
        } = self;
        let model = Model {
            gpu,
            k: kernels,
            spec,
            layer: *layer,
            precision: options.precision,
            layout,
            mats,
            unpacked: unpacked.as_ref(),
            vecs,
            rope,
            positions,
            max_seq: options.max_seq_len,
            choices,
            pdl: *pdl,
            trace: trace.as_ref().map(|t| t.marks()),
        };
        (model, lt, scratch, graphs)
    }

    /// Make sure the scratch holds `rows` rows (a new one drops the graphs that address the old one).
    pub(super) fn ensure_scratch(&mut self, rows: usize) -> Result<()> {
        if self.scratch.as_ref().is_some_and(|s| s.rows >= rows) {
            return Ok(());
        }
        self.graphs.clear();
        self.scratch = None;
        let want = rows.max(self.options.max_batch);
        self.scratch = Some(Scratch::new(
            &self.gpu,
            &self.spec,
            self.options.precision,
            want,
            self.options.max_batch,
            self.options.max_seq_len,
        )?);
        Ok(())
    }

    /// Run one call; results stay on the device (`scratch.logits`, `scratch.best`). Should a decode
    /// graph with programmatic dependent launches fail to build, the step is retried (and later steps
    /// run) without them.
    pub(super) fn run(
        &mut self,
        step: &StepInputs<'_>,
        cache: &mut [LayerKvMut<'_>],
        call: Call,
    ) -> Result<()> {
        match self.run_once(step, cache, call) {
            Err(e) if self.pdl && call.is_decode() => {
                eprintln!(
                    "llmforge cuda: decode graph with programmatic dependent launch failed ({e}); continuing without"
                );
                self.pdl = false;
                self.graphs.clear();
                self.run_once(step, cache, call)
            }
            r => r,
        }
    }

    fn run_once(
        &mut self,
        step: &StepInputs<'_>,
        cache: &mut [LayerKvMut<'_>],
        call: Call,
    ) -> Result<()> {
        let traced = self.trace.is_some() && call.is_decode();
        if traced {
            self.trace_reset()?;
        }
        self.ensure_scratch(call.rows())?;
        let mut kv = Vec::with_capacity(cache.len());
        if call.mode != CacheMode::None {
            for (l, layer) in cache.iter().enumerate() {
                kv.push(LayerKv {
                    k: device_cache(layer.key, l, "key")?.view_mut(),
                    v: device_cache(layer.value, l, "value")?.view_mut(),
                });
            }
        }
        let (m, lt, scratch, graphs) = self.split();
        let s = scratch.as_mut().ok_or_else(missing_scratch)?;
        let words = s.input_words(
            step.input_ids,
            step.position_ids,
            step.start_idx,
            step.end_idx,
        );
        m.gpu.write(&mut s.inputs, &words, "step inputs")?;
        let s = &*s;
        if !call.is_decode() {
            return forward::encode(&m, lt, s, &call, &kv);
        }
        let key = GraphKey {
            batch: call.batch,
            mode: call.mode,
            argmax: call.argmax,
            scratch_rows: s.rows,
            cache: kv.iter().map(|l| (l.k.addr(), l.v.addr())).collect(),
        };
        let fresh = graphs.get(&key).is_none();
        if fresh {
            // One eager run first: libraries load their kernels lazily, which must not happen inside
            // a capture. Replaying the same step afterwards rewrites the same K/V at the same positions.
            forward::encode(&m, lt, s, &call, &kv)?;
            m.gpu.sync("decode warm-up")?;
            let stream = &m.gpu.stream;
            stream
                .begin_capture(
                    cudarc::driver::sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
                )
                .map_err(cuda_err("cuStreamBeginCapture"))?;
            let encoded = forward::encode(&m, lt, s, &call, &kv);
            let ended = stream.end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0));
            encoded?;
            let graph = ended
                .map_err(cuda_err("cuStreamEndCapture"))?
                .ok_or_else(|| {
                    Error::Backend(BackendError::Other(
                        "CUDA graph capture produced no graph".into(),
                    ))
                })?;
            graphs.insert(key.clone(), graph);
        }
        let launched = match graphs.get(&key) {
            Some(g) => g.launch().map_err(cuda_err("cuGraphLaunch")),
            None => Err(Error::Backend(BackendError::Other(
                "decode graph missing".into(),
            ))),
        };
        if traced && launched.is_ok() {
            // The step that captured the graph also ran it eagerly: its marks mix both runs.
            self.trace_collect(!fresh)?;
        }
        launched
    }

    /// Tuning runs (`trace.rs`): clear the timeline marks before a traced decode step.
    fn trace_reset(&mut self) -> Result<()> {
        let CudaBackend { gpu, trace, .. } = self;
        match trace {
            Some(t) => t.reset(gpu),
            None => Ok(()),
        }
    }

    /// After a traced decode step: wait for it and, when `keep`, add its marks to the timeline.
    fn trace_collect(&mut self, keep: bool) -> Result<()> {
        let CudaBackend { gpu, trace, .. } = self;
        if let Some(t) = trace {
            gpu.sync("traced decode step")?;
            if keep {
                t.collect(gpu)?;
            }
        }
        Ok(())
    }
}
