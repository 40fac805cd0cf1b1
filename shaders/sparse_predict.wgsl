// sparse_predict.wgsl — predictions of a sparse FastL2LiR model from the selected products only.
//
// Inputs (the host prepends its prelude: `alias real = f32|f64;` and the constants of
// KernelParams, e.g. WG):
//   x:   rows × f row-major samples (the model's features)
//   idx: units × k selected feature indices per unit (u32)
//   w:   units × k weights, in the order of idx
//   b:   units biases
// Output: out, rows × units row-major: out[r, u] = b[u] + Σ_m x[r, idx[u, m]] · w[u, m]
// (n'·U·k products instead of the n'·F·U of a dense W).
// Workgroup mapping: one thread per output element, the linear index e = r·units + u spanning
// workgroup_id.x and .y (split by the host to stay within 65 535 workgroups per dimension), WG
// threads per workgroup; each thread loops over the k selected features (k < 65 535 keeps
// llvmpipe's loop cap).

struct Params {
    rows: u32, units: u32, k: u32, f: u32,
}

@group(0) @binding(0) var<storage, read> x: array<real>;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<real>;
@group(0) @binding(3) var<storage, read> b: array<real>;
@group(0) @binding(4) var<storage, read_write> out: array<real>;
@group(0) @binding(5) var<uniform> p: Params;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = (wg.y * nwg.x + wg.x) * WG + lid.x;
    if (e >= p.rows * p.units) { return; }
    let r = e / p.units;
    let u = e % p.units;
    var acc = real(0.0);
    for (var m = 0u; m < p.k; m++) {
        acc = acc + x[r * p.f + idx[u * p.k + m]] * w[u * p.k + m];
    }
    out[e] = acc + b[u];
}
