//! Mixed-precision per-unit solves on the GPU (`refine.wgsl`): where the adapter has
//! `SHADER_F64`, each unit's f64 system is solved by iterative refinement preconditioned by the
//! f32 Cholesky factor of its centred block, and only the units where that fails or does not
//! converge are factored in f64.
//!
//! Why: the f64 rate of most GPUs is a small fraction of their f32 rate (1/64 on consumer
//! NVIDIA parts, 1/16 on AMD's; 1/2 on data-centre parts), and the factorisation is the only
//! O(m³) step. The f32 factor of the **centred** block `B = XcᵀXc + αI` is a good preconditioner
//! (condition numbers of a few 10⁵ at fMRI-like scales), where that of the uncentred system would
//! not be (the voxels' baselines put an eigenvalue near `n·k·x̄²` next to ones near α). The
//! refinement's residuals use the gathered f64 system itself, and it stops by LAPACK `dsposv`'s
//! rule, so a converged result is that of a backward-stable f64 solve. The singular-system
//! verdicts stay those of the f64 path: a unit whose f32 factor meets a small pivot, or that does
//! not converge within [`MAX_REFINE`] steps, is factored in f64 as before.
//!
//! It is the default on adapters whose f64 rate is below half their f32 rate
//! ([`super::AdapterSummary::full_rate_f64`]); on an H100 (f64 at half the f32 rate, measured)
//! the f64 factorisation was as fast or faster, so full-rate adapters keep it.
//! `NEUROFIT_GPU_SOLVE=mixed|f64` forces either; software adapters refine systems up to
//! [`super::params::SOFTWARE_REFINE_MAX_SYSTEM`].

use super::buffers::{floats, words};
use super::context::GpuContext;
use super::kernels::{Quad, Systems};
use super::pipelines::Shader;
use crate::backend::Solved;
use crate::cpu::solve::MAX_REFINE;
use crate::error::Result;
use crate::linalg::singular_pivot_tolerance;
use crate::Dtype;
use std::sync::OnceLock;

pub(super) const REFINE: Shader = Shader {
    name: "refine",
    source: include_str!("../../shaders/refine.wgsl"),
};

/// The environment variable that chooses how f64 systems are solved: `f64` (always factor in
/// f64), `mixed` (always refine from an f32 factor where the system fits) or `auto` (the
/// default: mixed unless the adapter runs f64 at half its f32 rate or better, see
/// [`super::AdapterSummary::full_rate_f64`]).
pub const SOLVE_ENV: &str = "NEUROFIT_GPU_SOLVE";

/// `refine.wgsl`'s status of a unit that met the stopping rule.
const CONVERGED: u32 = 0xffff_fffe;

/// A status the f64 factorisation reads as "skip this system".
const SKIP: u32 = u32::MAX;

/// Refinement steps recorded per submit (the status is read between rounds).
const STEPS_PER_ROUND: usize = 3;

/// The choice [`SOLVE_ENV`] makes: `Some(true)` mixed, `Some(false)` f64, `None` by adapter
/// (read once per process).
fn solve_override() -> Option<bool> {
    static MODE: OnceLock<Option<bool>> = OnceLock::new();
    *MODE.get_or_init(|| {
        let v = std::env::var(SOLVE_ENV).ok()?;
        match v.trim() {
            "f64" => Some(false),
            "mixed" => Some(true),
            "auto" | "" => None,
            other => {
                log::warn!("{SOLVE_ENV}={other} ignored: expected auto, mixed or f64");
                None
            }
        }
    })
}

impl GpuContext {
    /// Whether systems of size `m` (k selected features and the bias) solved in `sreal` take the
    /// mixed-precision path.
    pub fn refines(&self, m: usize, sreal: Dtype) -> bool {
        self.mixed_solves(sreal) && m >= 2 && m <= self.params.refine_max_system
    }

    /// Whether systems solved in `sreal` take the mixed-precision path (when their size allows).
    pub(super) fn mixed_solves(&self, sreal: Dtype) -> bool {
        let mixed = solve_override().unwrap_or(!self.info.full_rate_f64);
        mixed && sreal == Dtype::F64
    }

    /// Device bytes the mixed-precision path adds per system of size `m`: the f32 block and
    /// diagonal, the solution and three work vectors (f64), four f64 scalars, and the
    /// refinement's and the f64 fall-back's status words.
    pub fn refine_bytes(m: usize) -> u64 {
        let k = (m - 1) as u64;
        (k * k + k) * 4 + (4 * m as u64 + 4) * 8 + 2 * 4
    }

    /// Solves the gathered f64 systems `s` (right-hand sides in `s.rhs`, left unchanged by the
    /// refinement) over `n` samples with ridge `alpha`, continuing `enc` (which holds the
    /// gather). Returns every unit's solution and the f64 path's verdicts.
    pub(super) fn solve_refined(
        &self,
        mut enc: wgpu::CommandEncoder,
        s: &Systems,
        n: usize,
        alpha: f64,
    ) -> Result<Solved> {
        let (m, units) = (s.m, s.units);
        let k = m - 1;
        let l = self.zeros(units * k * k, 4, "f32 centred blocks")?;
        let d32 = self.zeros(units * k, 4, "f32 diagonals")?;
        let status = self.zeros(units, 4, "refinement status")?;
        let x = self.zeros(units * m, 8, "refined solutions")?;
        let v = self.zeros(units * 3 * m, 8, "refinement vectors")?;
        let nf = n as f64;
        let mut consts = vec![
            nf,
            alpha,
            (m as f64).sqrt() * f64::EPSILON,
            nf * alpha / (nf + alpha),
            f64::MAX,
            0.0,
            0.0,
            0.0,
        ];
        consts.resize(8 + 4 * units, 0.0);
        let sc = self.upload(&consts, Dtype::F64, "refinement scalars")?;
        let p = self.uniform(&Quad {
            a: m as u32,
            b: k as u32,
            c: 0,
            d: 0,
        });
        let bind = |ids: &[u32]| {
            let all = [
                &s.sys.buf,
                &s.rhs.buf,
                &l.buf,
                &d32.buf,
                &v.buf,
                &sc.buf,
                &status.buf,
                &p,
                &x.buf,
            ];
            ids.iter()
                .map(|&i| (i, all[i as usize]))
                .collect::<Vec<_>>()
        };
        let narrow = self.pipeline(REFINE, "narrow", Dtype::F64, Dtype::F64)?;
        let (gx, gy, _) = self.params.linear_groups(k * k);
        self.dispatch(
            &mut enc,
            &narrow,
            &bind(&[0, 2, 3, 5, 7]),
            (gx, gy, units as u32),
        )?;
        let block = Systems {
            sys: &l,
            rhs: s.rhs,
            status: &status,
            diag: &d32,
            m: k,
            units,
        };
        let tol = singular_pivot_tolerance(k, f32::EPSILON as f64) as f32;
        self.batched_cholesky_factor(&mut enc, &block, Dtype::F32, tol)?;
        let setup = self.pipeline(REFINE, "setup", Dtype::F64, Dtype::F64)?;
        let step = self.pipeline(REFINE, "step", Dtype::F64, Dtype::F64)?;
        let all = bind(&[0, 1, 2, 4, 5, 6, 7, 8]);
        self.dispatch(&mut enc, &setup, &all, (units as u32, 1, 1))?;
        // rounds of steps, each read back with the solutions (a round is usually the last)
        let mut steps = 0;
        let (states, mut theta) = loop {
            for _ in 0..STEPS_PER_ROUND.min(MAX_REFINE - steps) {
                self.dispatch(&mut enc, &step, &all, (units as u32, 1, 1))?;
                steps += 1;
            }
            let bytes = self.submit_and_read(enc, &[&status, &x], "refinement")?;
            let states = words(&bytes[0]);
            if steps >= MAX_REFINE || states.iter().all(|&st| st != 0) {
                break (states, floats(&bytes[1], 8));
            }
            enc = self.encoder();
        };
        let mut failed = vec![None; units];
        if states.iter().any(|&st| st != CONVERGED) {
            // the f64 factorisation for the rest, with its verdicts
            let skip: Vec<u32> = states
                .iter()
                .map(|&st| if st == CONVERGED { SKIP } else { 0 })
                .collect();
            let st64 = self.upload_u32(&skip, "f64 fall-back status")?;
            let rest = Systems {
                status: &st64,
                ..*s
            };
            let mut enc = self.encoder();
            self.batched_cholesky_solve(&mut enc, &rest, Dtype::F64)?;
            let bytes = self.submit_and_read(enc, &[s.rhs, &st64], "f64 fall-back solves")?;
            let (sol, verdicts) = (floats(&bytes[0], 8), words(&bytes[1]));
            for u in 0..units {
                if states[u] == CONVERGED {
                    continue;
                }
                theta[u * m..(u + 1) * m].copy_from_slice(&sol[u * m..(u + 1) * m]);
                failed[u] = (verdicts[u] != 0).then(|| verdicts[u] as usize - 1);
            }
        }
        let refined = states.iter().filter(|&&st| st == CONVERGED).count();
        log::debug!(
            "per-unit solves: {refined} of {units} refined from f32 factors in {steps} steps, {} factored in f64",
            units - refined
        );
        Ok(Solved {
            theta,
            failed,
            refined,
        })
    }
}
