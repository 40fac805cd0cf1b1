// cholesky_params.wgsl — the parameters and bindings shared by the two batched Cholesky kernels,
// cholesky.wgsl (blocked) and small_cholesky.wgsl (systems of at most CS) (the host places this
// file before either; `sreal` comes from the prelude). Meaning of each field and buffer: see
// those files' headers (sys: the systems, rhs: right-hand sides then solutions, status: one word
// per system, diag: the original diagonals).

struct Params {
    m: u32, j0: u32, j1: u32, tol: f32,
}

@group(0) @binding(0) var<storage, read_write> sys: array<sreal>;
@group(0) @binding(1) var<storage, read_write> rhs: array<sreal>;
@group(0) @binding(2) var<storage, read_write> status: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> diag: array<sreal>;
