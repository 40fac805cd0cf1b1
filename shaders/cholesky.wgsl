// cholesky.wgsl — batched Cholesky factorisation and triangular solves, one workgroup per
// matrix, with a per-matrix status (a failed matrix never aborts the batch).
//
// Inputs (the host prepends its prelude: `alias sreal = f32|f64;` and the constants of KernelParams, e.g. WG):
//   sys:    batch × m × m, row-major per matrix; the lower triangle holds A on entry and L on exit
//   rhs:    batch × m; b on entry, the solution of A x = b after `forward` then `backward`
//   status: batch; 0 = fine, j + 1 = the pivot of column j was ≤ p.tol · (original diagonal j),
//           i.e. not positive or numerically zero (the matrix is skipped from then on)
//   diag:   batch × m original diagonals (read by `factor`)
// Entry points (each processes columns [p.j0, p.j1) so that the host can split the work into
// dispatches that stay below llvmpipe's 65 535 loop trips per invocation):
//   factor    right-looking: pivot, scale column j, rank-1 update of the trailing lower triangle
//   forward   L y = b, column-oriented
//   backward  Lᵀ x = y, columns from p.j1 − 1 down to p.j0
// Workgroup mapping: workgroup_id.x = matrix within the batch; WG (256) threads share each column
// step; the trailing triangle is walked by its packed index t = r(r+1)/2 + c.

struct Params {
    m: u32, j0: u32, j1: u32, tol: f32,
}

@group(0) @binding(0) var<storage, read_write> sys: array<sreal>;
@group(0) @binding(1) var<storage, read_write> rhs: array<sreal>;
@group(0) @binding(2) var<storage, read_write> status: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> diag: array<sreal>; // original diagonals (factor only)

var<workgroup> w_state: u32;
var<workgroup> w_val: sreal;

fn tri_row(t: u32) -> u32 {
    var r = u32((sqrt(8.0 * f32(t) + 1.0) - 1.0) * 0.5);
    // correct the float estimate
    if ((r + 1u) * (r + 2u) / 2u <= t) { r = r + 1u; }
    if (r * (r + 1u) / 2u > t) { r = r - 1u; }
    return r;
}

@compute @workgroup_size(WG, 1, 1)
fn factor(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let u = wg.x;
    let m = p.m;
    let base = u * m * m;
    let tid = lid.x;
    if (tid == 0u) { w_state = status[u]; }
    let st = workgroupUniformLoad(&w_state);
    if (st != 0u) { return; }
    for (var j = p.j0; j < p.j1; j++) {
        if (tid == 0u) {
            let d = sys[base + j * m + j];
            if (d > sreal(p.tol) * diag[u * m + j]) {
                let s = sqrt(d);
                sys[base + j * m + j] = s;
                w_val = s;
                w_state = 0u;
            } else {
                status[u] = j + 1u;
                w_state = 1u;
            }
        }
        let failed = workgroupUniformLoad(&w_state);
        if (failed != 0u) { break; }
        let piv = w_val;
        for (var i = j + 1u + tid; i < m; i += WG) {
            sys[base + i * m + j] = sys[base + i * m + j] / piv;
        }
        storageBarrier();
        workgroupBarrier();
        let s = m - j - 1u;
        let total = s * (s + 1u) / 2u;
        for (var t = tid; t < total; t += WG) {
            let r = tri_row(t);
            let c = t - r * (r + 1u) / 2u;
            let i = j + 1u + r;
            let l = j + 1u + c;
            sys[base + i * m + l] = sys[base + i * m + l] - sys[base + i * m + j] * sys[base + l * m + j];
        }
        storageBarrier();
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG, 1, 1)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let u = wg.x;
    let m = p.m;
    let base = u * m * m;
    let tid = lid.x;
    if (tid == 0u) { w_state = status[u]; }
    let st = workgroupUniformLoad(&w_state);
    if (st != 0u) { return; }
    for (var j = p.j0; j < p.j1; j++) {
        if (tid == 0u) {
            let y = rhs[u * m + j] / sys[base + j * m + j];
            rhs[u * m + j] = y;
            w_val = y;
        }
        let yj = workgroupUniformLoad(&w_val);
        for (var i = j + 1u + tid; i < m; i += WG) {
            rhs[u * m + i] = rhs[u * m + i] - sys[base + i * m + j] * yj;
        }
        storageBarrier();
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG, 1, 1)
fn backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let u = wg.x;
    let m = p.m;
    let base = u * m * m;
    let tid = lid.x;
    if (tid == 0u) { w_state = status[u]; }
    let st = workgroupUniformLoad(&w_state);
    if (st != 0u) { return; }
    var j = p.j1;
    loop {
        if (j <= p.j0) { break; }
        j = j - 1u;
        if (tid == 0u) {
            let x = rhs[u * m + j] / sys[base + j * m + j];
            rhs[u * m + j] = x;
            w_val = x;
        }
        let xj = workgroupUniformLoad(&w_val);
        for (var i = tid; i < j; i += WG) {
            rhs[u * m + i] = rhs[u * m + i] - sys[base + j * m + i] * xj;
        }
        storageBarrier();
        workgroupBarrier();
    }
}
