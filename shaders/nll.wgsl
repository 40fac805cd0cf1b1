// nll.wgsl — the shrinkage-NLL scorer's device stages (the factorisation itself is
// cholesky.wgsl `factor`, run on the same stack with tolerance 0, i.e. LAPACK potrf semantics).
//
// Inputs (the host prepends its prelude: `alias real`, `alias sreal = f32|f64;` and the constants of KernelParams, e.g. WG):
//   cov:    N × N covariance (one copy for all levels), row-major
//   pts:    N × M held-out points, row-major (point m is column m)
//   levels: the shrinkage levels of this chunk
// Buffers per chunk of L levels:
//   sys:  L × N × N   the shrunk matrices, then their Cholesky factors (lower triangle)
//   diag: L × N       the shrunk diagonals (read by `factor`)
//   y:    L × N × M   the points, then L⁻¹·points
//   status: L         0 = factor fine (written by `factor`)
//   rowsq, logd: L × N  per row: Σ_m y², and L_ii (the host takes the logarithm in f64:
//                       GLSL.std.450 `Log` is defined for 16/32-bit floats only, so f64 `log`
//                       is not portable)
// Entry points and workgroup mapping (WG = 256 threads in x):
//   build      the linear entry index spans workgroup_id.x and .y (max(N·N, N·M) entries, split
//              by the host to stay within 65 535 workgroups per dimension); workgroup_id.z = level.
//              sys = Sh_λ(cov) (off-diagonals × λ), diag; and copies pts into y
// (trsm_rows and reduce: workgroup_id.y = level in the chunk)
//   trsm_rows  x walks the M columns; rows [p.i0, p.i1) of the forward substitution L y = pts.
//              The host keeps (i1 − i0)·N below ~32 768 loop trips (llvmpipe caps at 65 535).
//   reduce     x walks the N rows: rowsq[i] = Σ_m y[i, m]², logd[i] = L_ii

struct Params {
    n: u32, m: u32, i0: u32, i1: u32,
}

@group(0) @binding(0) var<storage, read> cov: array<sreal>;
@group(0) @binding(1) var<storage, read> pts: array<sreal>;
@group(0) @binding(2) var<storage, read> levels: array<sreal>;
@group(0) @binding(3) var<storage, read_write> sys: array<sreal>;
@group(0) @binding(4) var<storage, read_write> diag: array<sreal>;
@group(0) @binding(5) var<storage, read_write> y: array<sreal>;
@group(0) @binding(6) var<storage, read> status: array<u32>;
@group(0) @binding(7) var<storage, read_write> rowsq: array<sreal>;
@group(0) @binding(8) var<storage, read_write> logd: array<sreal>;
@group(0) @binding(9) var<uniform> p: Params;

@compute @workgroup_size(WG, 1, 1)
fn build(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_id) lid: vec3<u32>) {
    let l = wg.z;
    let e = (wg.y * nwg.x + wg.x) * WG + lid.x;
    let nn = p.n * p.n;
    if (e < nn) {
        let i = e / p.n;
        let j = e % p.n;
        var v = cov[e];
        if (i != j) {
            v = v * levels[l];
        } else {
            diag[l * p.n + i] = v;
        }
        sys[l * nn + e] = v;
    }
    let nm = p.n * p.m;
    // the same threads also copy the points (the grid covers max(N·N, N·M) entries)
    if (e < nm) {
        y[l * nm + e] = pts[e];
    }
}

@compute @workgroup_size(WG, 1, 1)
fn trsm_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let l = wg.y;
    let col = wg.x * WG + lid.x;
    if (col >= p.m || status[l] != 0u) { return; }
    let nn = p.n * p.n;
    let nm = p.n * p.m;
    for (var i = p.i0; i < p.i1; i++) {
        var acc = y[l * nm + i * p.m + col];
        for (var j = 0u; j < i; j++) {
            acc = acc - sys[l * nn + i * p.n + j] * y[l * nm + j * p.m + col];
        }
        y[l * nm + i * p.m + col] = acc / sys[l * nn + i * p.n + i];
    }
}

@compute @workgroup_size(WG, 1, 1)
fn reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let l = wg.y;
    let i = wg.x * WG + lid.x;
    if (i >= p.n || status[l] != 0u) { return; }
    let nn = p.n * p.n;
    let nm = p.n * p.m;
    var s = sreal(0.0);
    for (var c = 0u; c < p.m; c++) {
        let v = y[l * nm + i * p.m + c];
        s = s + v * v;
    }
    rowsq[l * p.n + i] = s;
    logd[l * p.n + i] = sys[l * nn + i * p.n + i];
}
