// corr.wgsl — turns centred cross products into |r| with the FastL2LiR rules.
//
// Inputs (the host prepends its prelude: `alias real = f32|f64;` and the constants WG, TILE, KT, LOW_VARIANCE, UNDEFINED_CORR of KernelParams):
//   r:   units × ld row-major, (u, j) holds Σ_i yc[i,u]·xc[i,j]; overwritten with |r|
//   ssx: per feature Σ_i xc[i,j]²;  ssy: per unit Σ_i yc[i,u]²
// Output: 0 where the feature's population variance ssx/n < LOW_VARIANCE; UNDEFINED_CORR (−1,
// the host reads it as NaN) where the unit has zero variance; else |Σxy| / (√ssx · √ssy).
// Workgroup mapping: one thread per element (u, j), linear index over workgroup_id.x/.y.

struct Params {
    units: u32, cols: u32, ld: u32, n: u32,
}

@group(0) @binding(0) var<storage, read_write> r: array<real>;
@group(0) @binding(1) var<storage, read> ssx: array<real>;
@group(0) @binding(2) var<storage, read> ssy: array<real>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = (wg.y * nwg.x + wg.x) * WG + lid.x;
    if (e >= p.units * p.cols) { return; }
    let u = e / p.cols;
    let j = e % p.cols;
    let idx = u * p.ld + j;
    let sx = ssx[j];
    let sy = ssy[u];
    var out = real(0.0);
    if (sx / real(p.n) < real(LOW_VARIANCE)) {
        out = real(0.0);
    } else if (sy == real(0.0)) {
        out = real(UNDEFINED_CORR);
    } else {
        out = abs(r[idx]) / (sqrt(sx) * sqrt(sy));
    }
    r[idx] = out;
}
