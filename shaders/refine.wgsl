// refine.wgsl — mixed-precision per-unit solves for adapters with SHADER_F64: each unit's
// (k+1) × (k+1) ridge system A (f64, as `gather` writes it) is solved by iterative refinement in
// f64, preconditioned by the f32 Cholesky factor of its centred k × k block, until LAPACK
// dsposv's stopping rule ‖b − Ax‖∞ ≤ √m · ε₆₄ · ‖A‖∞ · ‖x‖∞ holds. Units that never meet it, or
// whose f32 factor fails, are left for the f64 factorisation (`cholesky.wgsl` on A).
//
// The bias (index k = m − 1, last) is eliminated exactly: with n the samples and x̄ the selected
// features' means, A = [[B + n x̄x̄ᵀ, n x̄], [n x̄ᵀ, n + α]] where B = XcᵀXc + αI is the centred
// block, so A⁻¹ applies through the Schur complement S = B + c x̄x̄ᵀ, c = nα/(n + α), and
// Sherman–Morrison with w = B̂⁻¹x̄, γ = c / (1 + c x̄ᵀw). The preconditioner is B̂ = f32(B); the
// f64 residual uses A itself, so the result is that of a backward-stable f64 solve of A.
//
// Inputs (the host prepends its prelude: the constants of KernelParams, e.g. WG = 256; this
// shader names f32 and f64 itself):
//   a:      units × m × m f64, row-major per unit, lower triangle of A; row k is the bias row
//           (A[k, i] = Σ x_i = n x̄_i, A[k, k] = n + α)
//   b:      units × m f64 right-hand sides
//   l:      units × k × k f32, row-major: `narrow` writes B's lower triangle, `cholesky.wgsl`
//           (run on it as k × k systems) factors it into L̂
//   d32:    units × k f32, B's diagonal (the f32 factorisation's pivot test)
//   x:      units × m f64 solutions (the host reads only these back)
//   v:      units × 3m f64 work vectors per unit: r (the residual), t (scratch), w = B̂⁻¹x̄
//   sc:     f64 constants sc[0..8] = n, α, √m · ε₆₄, c, the largest finite f64; then per unit
//           sc[8 + 4u ..] = ‖A‖∞, γ
//   status: units u32, the f32 factorisation's status (0 = fine, j + 1 = pivot j failed), then
//           CONVERGED or GAVE_UP; 0 after the last step = not converged
// Entry points and workgroup mapping:
//   narrow  B's lower triangle: the linear entry index over k² spans workgroup_id.x/y × WG
//           threads; workgroup_id.z is the unit (the host splits as for `gather`)
//   setup   one workgroup (WG threads in x) per unit, workgroup_id.x: ‖A‖∞, w, γ, x = 0, r = b
//   step    one workgroup per unit: one refinement step, x += P⁻¹r, r = b − Ax, the test
// Loop trips per invocation of setup/step: m·⌈m/WG⌉ + 2k·(⌈k/WG⌉ + 1) + a few ⌈m/WG⌉; the host
// runs this shader on software adapters (llvmpipe's 65 535 cap) only for m ≤ 1024.

struct Params {
    m: u32, k: u32, pad0: u32, pad1: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f64>;
@group(0) @binding(1) var<storage, read> b: array<f64>;
@group(0) @binding(2) var<storage, read_write> l: array<f32>;
@group(0) @binding(3) var<storage, read_write> d32: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f64>;
@group(0) @binding(5) var<storage, read_write> sc: array<f64>;
@group(0) @binding(6) var<storage, read_write> status: array<u32>;
@group(0) @binding(7) var<uniform> p: Params;
@group(0) @binding(8) var<storage, read_write> x: array<f64>;

const CONVERGED: u32 = 0xfffffffeu;
const GAVE_UP: u32 = 0xffffffffu;

var<workgroup> red: array<f64, WG>;
var<workgroup> w_state: u32;
var<workgroup> w_val: f64;

// A[i, j] of the symmetric matrix from its lower triangle.
fn sym(base: u32, i: u32, j: u32) -> f64 {
    if (i >= j) { return a[base + i * p.m + j]; }
    return a[base + j * p.m + i];
}

// The workgroup's sum (`is_max` = false) or maximum of x; call from uniform control flow.
fn reduce(x: f64, tid: u32, is_max: bool) -> f64 {
    red[tid] = x;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (tid < s) {
            if (is_max) {
                red[tid] = max(red[tid], red[tid + s]);
            } else {
                red[tid] = red[tid] + red[tid + s];
            }
        }
        workgroupBarrier();
    }
    if (tid == 0u) { w_val = red[0]; }
    return workgroupUniformLoad(&w_val);
}

// Whether unit u is finished (status ≠ 0); uniform.
fn finished(u: u32, tid: u32) -> bool {
    if (tid == 0u) { w_state = status[u]; }
    return workgroupUniformLoad(&w_state) != 0u;
}

// Where unit u's data lie: its matrix, its bias row, its solution in `x` and its vectors r, t,
// w in `v`.
struct Unit {
    base: u32, bias: u32, x: u32, r: u32, t: u32, w: u32,
}

fn unit(u: u32) -> Unit {
    let base = u * p.m * p.m;
    let vb = u * 3u * p.m;
    return Unit(base, base + p.k * p.m, u * p.m, vb, vb + p.m, vb + 2u * p.m);
}

// t ← L̂⁻ᵀ L̂⁻¹ t for the k-vector at v[tb ..], computed in f64 from the f32 factor.
fn apply_factor(u: u32, tb: u32, tid: u32) {
    let k = p.k;
    let lb = u * k * k;
    for (var j = 0u; j < k; j++) {
        if (tid == 0u) {
            let y = v[tb + j] / f64(l[lb + j * k + j]);
            v[tb + j] = y;
            w_val = y;
        }
        let yj = workgroupUniformLoad(&w_val);
        for (var i = j + 1u + tid; i < k; i += WG) {
            v[tb + i] = v[tb + i] - f64(l[lb + i * k + j]) * yj;
        }
        storageBarrier();
        workgroupBarrier();
    }
    var j = k;
    loop {
        if (j == 0u) { break; }
        j = j - 1u;
        if (tid == 0u) {
            let xv = v[tb + j] / f64(l[lb + j * k + j]);
            v[tb + j] = xv;
            w_val = xv;
        }
        let xj = workgroupUniformLoad(&w_val);
        for (var i = tid; i < j; i += WG) {
            v[tb + i] = v[tb + i] - f64(l[lb + j * k + i]) * xj;
        }
        storageBarrier();
        workgroupBarrier();
    }
}

// 1 where x is NaN or infinite (every comparison with NaN is false).
fn bad(x: f64) -> f64 {
    if (abs(x) <= sc[4]) { return f64(0.0); }
    return f64(1.0);
}

@compute @workgroup_size(WG, 1, 1)
fn narrow(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let u = wg.z;
    let e = (wg.y * nwg.x + wg.x) * WG + lid.x;
    let m = p.m;
    let k = p.k;
    if (e >= k * k) { return; }
    let i = e / k;
    let j = e % k;
    if (j > i) { return; }
    let base = u * m * m;
    let n = sc[0];
    let bias = base + k * m;
    let bij = a[base + i * m + j] - a[bias + i] * a[bias + j] / n;
    l[u * k * k + i * k + j] = f32(bij);
    if (i == j) { d32[u * k + i] = f32(bij); }
}

@compute @workgroup_size(WG, 1, 1)
fn setup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let u = wg.x;
    let tid = lid.x;
    let m = p.m;
    let k = p.k;
    let q = unit(u);
    let n = sc[0];
    let c = sc[3];
    if (finished(u, tid)) { return; }
    // ‖A‖∞ (row sums of |A|), x = 0, r = b, t = x̄
    var rowmax = f64(0.0);
    var nbad = f64(0.0);
    for (var i = tid; i < m; i += WG) {
        var s = f64(0.0);
        for (var j = 0u; j < m; j++) {
            s = s + abs(sym(q.base, i, j));
        }
        nbad = nbad + bad(s);
        if (bad(s) == f64(0.0)) { rowmax = max(rowmax, s); }
        x[q.x + i] = f64(0.0);
        v[q.r + i] = b[u * m + i];
        if (i < k) { v[q.t + i] = a[q.bias + i] / n; }
    }
    let anrm = reduce(rowmax, tid, true);
    let nonfinite = reduce(nbad, tid, false);
    storageBarrier();
    workgroupBarrier();
    // w = B̂⁻¹x̄ and γ = c / (1 + c x̄ᵀw)
    apply_factor(u, q.t, tid);
    var part = f64(0.0);
    for (var i = tid; i < k; i += WG) {
        let wi = v[q.t + i];
        v[q.w + i] = wi;
        part = part + a[q.bias + i] / n * wi;
    }
    let gamma = c / (f64(1.0) + c * reduce(part, tid, false));
    if (tid == 0u) {
        if (nonfinite > f64(0.0) || bad(gamma) > f64(0.0)) { status[u] = GAVE_UP; }
        sc[8u + 4u * u] = anrm;
        sc[8u + 4u * u + 1u] = gamma;
    }
}

@compute @workgroup_size(WG, 1, 1)
fn step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let u = wg.x;
    let tid = lid.x;
    let m = p.m;
    let k = p.k;
    let q = unit(u);
    let n = sc[0];
    let np = n + sc[1];
    if (finished(u, tid)) { return; }
    let anrm = sc[8u + 4u * u];
    let gamma = sc[8u + 4u * u + 1u];
    // t = r_s − n x̄ r_bias / (n + α): the right-hand side of S once the bias is eliminated
    let r_bias = v[q.r + k];
    for (var i = tid; i < k; i += WG) {
        v[q.t + i] = v[q.r + i] - a[q.bias + i] * r_bias / np;
    }
    storageBarrier();
    workgroupBarrier();
    // d_s = B̂⁻¹t − w γ x̄ᵀB̂⁻¹t, d_bias = (r_bias − n x̄ᵀd_s) / (n + α); x += d
    apply_factor(u, q.t, tid);
    var part = f64(0.0);
    for (var i = tid; i < k; i += WG) {
        part = part + a[q.bias + i] / n * v[q.t + i];
    }
    let s = gamma * reduce(part, tid, false);
    var part2 = f64(0.0);
    for (var i = tid; i < k; i += WG) {
        let di = v[q.t + i] - v[q.w + i] * s;
        x[q.x + i] = x[q.x + i] + di;
        part2 = part2 + a[q.bias + i] * di;
    }
    let d_bias = (r_bias - reduce(part2, tid, false)) / np;
    if (tid == 0u) { x[q.x + k] = x[q.x + k] + d_bias; }
    storageBarrier();
    workgroupBarrier();
    // r = b − Ax and the stopping rule
    var rmax = f64(0.0);
    var xmax = f64(0.0);
    var nbad = f64(0.0);
    for (var i = tid; i < m; i += WG) {
        var acc = b[u * m + i];
        for (var j = 0u; j < m; j++) {
            acc = acc - sym(q.base, i, j) * x[q.x + j];
        }
        v[q.r + i] = acc;
        let xi = x[q.x + i];
        nbad = nbad + bad(acc) + bad(xi);
        rmax = max(rmax, abs(acc));
        xmax = max(xmax, abs(xi));
    }
    let rnorm = reduce(rmax, tid, true);
    let xnorm = reduce(xmax, tid, true);
    let nonfinite = reduce(nbad, tid, false);
    if (tid == 0u) {
        if (nonfinite > f64(0.0)) {
            status[u] = GAVE_UP;
        } else if (rnorm <= sc[2] * anrm * xnorm) {
            status[u] = CONVERGED;
        }
    }
}
