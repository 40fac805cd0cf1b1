// gemm_params.wgsl — the parameters and bindings shared by the two matrix-product kernels,
// gemm_tn.wgsl and gemm_tn_wide.wgsl (the host places this file before either; `real` comes from
// the prelude). Meaning of each field: see those files' headers.

struct Params {
    m: u32, n: u32, lda: u32, ldb: u32,
    ldc: u32, a_off: u32, b_off: u32, r0: u32,
    r1: u32, accumulate: u32, lower_only: u32, diag_off: u32,
}

@group(0) @binding(0) var<storage, read> a: array<real>;
@group(0) @binding(1) var<storage, read> b: array<real>;
@group(0) @binding(2) var<storage, read_write> c: array<real>;
@group(0) @binding(3) var<uniform> p: Params;
