// small_cholesky.wgsl — batched Cholesky factorisation, and optionally the two triangular solves,
// of small systems (m ≤ CS = 32) in one dispatch, each system held in workgroup memory.
//
// Inputs (the host prepends its prelude: `alias sreal = f32|f64;` and `const CS: u32 = 32u;`):
//   sys:    batch × m × m, row-major per matrix; the lower triangle holds A on entry and L on exit
//           (the upper triangle is neither read nor written)
//   rhs:    batch × m; b on entry, the solution of A x = b on exit when p.j1 = 1 (not touched when
//           p.j1 = 0: factorisation only)
//   status: batch; nonzero on entry = skip the matrix; on exit 0 = fine, j + 1 = the pivot of
//           column j was ≤ p.tol · (original diagonal j), i.e. not positive or numerically zero
//           (nothing of that matrix is written then)
//   diag:   batch × m original diagonals
// Workgroup mapping: workgroup_id.x = matrix, CS threads; thread t owns row t of the matrix (and
// entry t of the right-hand side) in workgroup memory. Right-looking, column by column: thread 0
// takes the pivot's square root, the threads below scale their row's entry, then update the rest
// of their row; the solves run column by column too. One dispatch replaces the blocked kernel's
// panel/update/forward/backward dispatches, and no thread idles on a 256-wide workgroup. Loop
// trips per invocation are at most CS² (far below llvmpipe's 65 535 cap).

// Params and bindings (sys, rhs, status, p, diag): cholesky_params.wgsl, placed before this file.

// row-major with a stride of CS + 1, so that a column's entries fall in different banks
const LD: u32 = CS + 1u;
var<workgroup> w_a: array<sreal, 1056>; // CS × (CS + 1)
var<workgroup> w_x: array<sreal, 32>;   // CS
var<workgroup> w_state: u32;

@compute @workgroup_size(CS, 1, 1)
fn factor_solve(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let u = wg.x;
    let m = p.m;
    let base = u * m * m;
    let t = lid.x;
    let mine = t < m;
    if (t == 0u) { w_state = status[u]; }
    if (workgroupUniformLoad(&w_state) != 0u) { return; }
    // the lower triangle, consecutive threads reading consecutive elements
    for (var e = t; e < m * m; e += CS) {
        let i = e / m;
        let j = e % m;
        if (j <= i) { w_a[i * LD + j] = sys[base + e]; }
    }
    workgroupBarrier();
    for (var c = 0u; c < m; c++) {
        if (t == 0u) {
            let d = w_a[c * LD + c];
            if (d > sreal(p.tol) * diag[u * m + c]) {
                w_a[c * LD + c] = sqrt(d);
            } else {
                status[u] = c + 1u;
                w_state = 1u;
            }
        }
        // a barrier: every thread sees the pivot (and the verdict) from here on
        if (workgroupUniformLoad(&w_state) != 0u) { return; }
        if (mine && t > c) { w_a[t * LD + c] = w_a[t * LD + c] / w_a[c * LD + c]; }
        workgroupBarrier();
        if (mine && t > c) {
            let l = w_a[t * LD + c];
            for (var j = c + 1u; j <= t; j++) {
                w_a[t * LD + j] = w_a[t * LD + j] - l * w_a[j * LD + c];
            }
        }
        workgroupBarrier();
    }
    for (var e = t; e < m * m; e += CS) {
        let i = e / m;
        let j = e % m;
        if (j <= i) { sys[base + e] = w_a[i * LD + j]; }
    }
    if (p.j1 == 0u) { return; }
    // L y = b, then Lᵀ x = y, column by column; entry t of the vector is thread t's
    if (mine) { w_x[t] = rhs[u * m + t]; }
    workgroupBarrier();
    for (var j = 0u; j < m; j++) {
        if (t == j) { w_x[j] = w_x[j] / w_a[j * LD + j]; }
        workgroupBarrier();
        if (mine && t > j) { w_x[t] = w_x[t] - w_a[t * LD + j] * w_x[j]; }
        workgroupBarrier();
    }
    for (var jj = 0u; jj < m; jj++) {
        let j = m - 1u - jj;
        if (t == j) { w_x[j] = w_x[j] / w_a[j * LD + j]; }
        workgroupBarrier();
        if (t < j) { w_x[t] = w_x[t] - w_a[j * LD + t] * w_x[j]; }
        workgroupBarrier();
    }
    if (mine) { rhs[u * m + t] = w_x[t]; }
}
