// colstats.wgsl — column statistics of a row-major matrix, used to centre X₁ and Y before the
// correlation product.
//
// Inputs (the host prepends its prelude: `alias real = f32|f64;` and the constants WG, TILE, KT, LOW_VARIANCE, UNDEFINED_CORR of KernelParams):
//   data: row-major rows × ld matrix, element (r, c) at data[r * p.ld + c], c < p.cols
//   acc:  one value per column
// Entry points:
//   col_sum   acc[c] (+)= Σ_{r=r0}^{r1-1} data[r, c]            (one thread per column)
//   col_sumsq acc[c] (+)= Σ_{r=r0}^{r1-1} data[r, c]²
//   center    data[r, c] -= acc[c] / p.count for r in [r0, r1)   (one thread per element)
// Workgroup mapping: WG (256) threads in x; the linear thread index spans workgroup_id.x and
// workgroup_id.y (the host splits large dispatches over y). Row slices (r1 − r0 ≤ 16 384) keep
// per-invocation loop trips below llvmpipe's 65 535 cap.

struct Params {
    cols: u32, ld: u32, r0: u32, r1: u32,
    accumulate: u32, count: u32, pad0: u32, pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> data: array<real>;
@group(0) @binding(1) var<storage, read_write> acc: array<real>;
@group(0) @binding(2) var<uniform> p: Params;

fn linear_id(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + lid.x;
}

@compute @workgroup_size(WG, 1, 1)
fn col_sum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = linear_id(wg, nwg, lid);
    if (c >= p.cols) { return; }
    var s = real(0.0);
    for (var r = p.r0; r < p.r1; r++) { s += data[r * p.ld + c]; }
    if (p.accumulate == 1u) { acc[c] = acc[c] + s; } else { acc[c] = s; }
}

@compute @workgroup_size(WG, 1, 1)
fn col_sumsq(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = linear_id(wg, nwg, lid);
    if (c >= p.cols) { return; }
    var s = real(0.0);
    for (var r = p.r0; r < p.r1; r++) { let v = data[r * p.ld + c]; s += v * v; }
    if (p.accumulate == 1u) { acc[c] = acc[c] + s; } else { acc[c] = s; }
}

@compute @workgroup_size(WG, 1, 1)
fn center(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = linear_id(wg, nwg, lid);
    let rows = p.r1 - p.r0;
    if (e >= rows * p.cols) { return; }
    let r = p.r0 + e / p.cols;
    let c = e % p.cols;
    data[r * p.ld + c] = data[r * p.ld + c] - acc[c] / real(p.count);
}
