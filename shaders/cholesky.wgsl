// cholesky.wgsl — batched Cholesky factorisation (blocked, right-looking) and triangular
// solves, with a per-matrix status (a failed matrix never aborts the batch).
//
// Inputs (the host prepends its prelude: `alias sreal = f32|f64;` and the constants of
// KernelParams: WG = 256, CB = 16 (block width), CT = 32 (update tile side)):
//   sys:    batch × m × m, row-major per matrix; the lower triangle holds A on entry and L on exit
//   rhs:    batch × m; b on entry, the solution of A x = b after `forward` then `backward`
//   status: batch; 0 = fine, j + 1 = the pivot of column j was ≤ p.tol · (original diagonal j),
//           i.e. not positive or numerically zero (the matrix is skipped from then on)
//   diag:   batch × m original diagonals (read by `panel`)
// Entry points; the host calls `panel` then `update` for each block column jb = p.j0 (a multiple
// of CB), then `forward`/`backward` over column ranges [p.j0, p.j1):
//   panel     workgroup_id.x = matrix. Factors the CB × CB diagonal block in workgroup memory
//             (unblocked, one element of the block per thread), writes L11, then solves the
//             panel L21 = A21 L11⁻ᵀ, one row of the panel per thread (the row in registers).
//   update    workgroup_id.x = matrix, workgroup_id.y + p.j1 = index of a CT × CT tile on or
//             below the diagonal of the trailing matrix (tile row ti, column tl ≤ ti, packed as
//             ti(ti+1)/2 + tl). A22 −= L21 L21ᵀ on that tile: the two CT × CB slices of L21
//             are staged in workgroup memory; the 16 × 16 threads hold 2 × 2 outputs each.
//   forward   L y = b, column-oriented
//   backward  Lᵀ x = y, columns from p.j1 − 1 down to p.j0
// Loop trips per invocation stay far below llvmpipe's 65 535 cap: a panel thread walks
// ⌈m / WG⌉ rows of CB²/2 steps, an update thread one tile of CB steps.

// Params and bindings (sys, rhs, status, p, diag): cholesky_params.wgsl, placed before this file.

var<workgroup> w_state: u32;
var<workgroup> w_val: sreal;
var<workgroup> w_block: array<sreal, 256>; // CB × CB, row-major
var<workgroup> w_ti: array<sreal, 512>;    // CT × CB rows of L21 for the tile's rows
var<workgroup> w_tl: array<sreal, 512>;    // CT × CB rows of L21 for the tile's columns

// Whether matrix u failed in an earlier dispatch (a workgroup-uniform answer; call it from
// uniform control flow).
fn already_failed(u: u32, tid: u32) -> bool {
    if (tid == 0u) { w_state = status[u]; }
    return workgroupUniformLoad(&w_state) != 0u;
}

fn tri_row(t: u32) -> u32 {
    var r = u32((sqrt(8.0 * f32(t) + 1.0) - 1.0) * 0.5);
    // correct the float estimate
    if ((r + 1u) * (r + 2u) / 2u <= t) { r = r + 1u; }
    if (r * (r + 1u) / 2u > t) { r = r - 1u; }
    return r;
}

@compute @workgroup_size(WG, 1, 1)
fn panel(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let u = wg.x;
    let m = p.m;
    let base = u * m * m;
    let tid = lid.x;
    let jb = p.j0;
    let nb = min(CB, m - jb);
    if (already_failed(u, tid)) { return; }
    // the diagonal block, one element per thread (CB² = WG)
    let br = tid / CB;
    let bc = tid % CB;
    var v = sreal(0.0);
    if (br < nb && bc <= br) { v = sys[base + (jb + br) * m + jb + bc]; }
    w_block[tid] = v;
    workgroupBarrier();
    for (var c = 0u; c < nb; c++) {
        if (tid == 0u) {
            let d = w_block[c * CB + c];
            if (d > sreal(p.tol) * diag[u * m + jb + c]) {
                w_block[c * CB + c] = sqrt(d);
                w_state = 0u;
            } else {
                status[u] = jb + c + 1u;
                w_state = 1u;
            }
        }
        let failed = workgroupUniformLoad(&w_state);
        if (failed != 0u) { break; }
        if (br > c && br < nb && bc == c) {
            w_block[tid] = w_block[tid] / w_block[c * CB + c];
        }
        workgroupBarrier();
        if (br < nb && bc > c && bc <= br) {
            w_block[tid] = w_block[tid] - w_block[br * CB + c] * w_block[bc * CB + c];
        }
        workgroupBarrier();
    }
    let failed = workgroupUniformLoad(&w_state);
    if (failed != 0u) { return; }
    if (br < nb && bc <= br) { sys[base + (jb + br) * m + jb + bc] = w_block[tid]; }
    // the panel: row i of L21 solves x L11ᵀ = a
    for (var i = jb + nb + tid; i < m; i += WG) {
        var x: array<sreal, CB>;
        for (var c = 0u; c < nb; c++) {
            var s = sys[base + i * m + jb + c];
            for (var t = 0u; t < c; t++) {
                s = s - x[t] * w_block[c * CB + t];
            }
            x[c] = s / w_block[c * CB + c];
            sys[base + i * m + jb + c] = x[c];
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let u = wg.x;
    let m = p.m;
    let base = u * m * m;
    let tid = lid.x;
    let jb = p.j0;
    let r0 = jb + CB; // the host dispatches `update` only when r0 < m
    let pair = wg.y + p.j1;
    let ti = tri_row(pair);
    let tl = pair - ti * (ti + 1u) / 2u;
    let i0 = r0 + ti * CT;
    let l0 = r0 + tl * CT;
    if (already_failed(u, tid) || i0 >= m) { return; }
    for (var t = tid; t < CT * CB; t += WG) {
        let r = t / CB;
        let c = t % CB;
        var a = sreal(0.0);
        var b = sreal(0.0);
        if (i0 + r < m) { a = sys[base + (i0 + r) * m + jb + c]; }
        if (l0 + r < m) { b = sys[base + (l0 + r) * m + jb + c]; }
        w_ti[t] = a;
        w_tl[t] = b;
    }
    workgroupBarrier();
    let ty = tid / 16u;
    let tx = tid % 16u;
    var a00 = sreal(0.0);
    var a01 = sreal(0.0);
    var a10 = sreal(0.0);
    var a11 = sreal(0.0);
    for (var c = 0u; c < CB; c++) {
        let x0 = w_ti[(2u * ty) * CB + c];
        let x1 = w_ti[(2u * ty + 1u) * CB + c];
        let y0 = w_tl[(2u * tx) * CB + c];
        let y1 = w_tl[(2u * tx + 1u) * CB + c];
        a00 = a00 + x0 * y0;
        a01 = a01 + x0 * y1;
        a10 = a10 + x1 * y0;
        a11 = a11 + x1 * y1;
    }
    let i = i0 + 2u * ty;
    let l = l0 + 2u * tx;
    if (i < m && l <= i) { sys[base + i * m + l] = sys[base + i * m + l] - a00; }
    if (i < m && l + 1u <= i) { sys[base + i * m + l + 1u] = sys[base + i * m + l + 1u] - a01; }
    if (i + 1u < m && l <= i + 1u) { sys[base + (i + 1u) * m + l] = sys[base + (i + 1u) * m + l] - a10; }
    if (i + 1u < m && l + 1u <= i + 1u) {
        sys[base + (i + 1u) * m + l + 1u] = sys[base + (i + 1u) * m + l + 1u] - a11;
    }
}

@compute @workgroup_size(WG, 1, 1)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let u = wg.x;
    let m = p.m;
    let base = u * m * m;
    let tid = lid.x;
    if (already_failed(u, tid)) { return; }
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
    if (already_failed(u, tid)) { return; }
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
