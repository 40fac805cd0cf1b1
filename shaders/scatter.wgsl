// scatter.wgsl — writes each unit's solution into its column of W (stored transposed) and b.
//
// Inputs (host prepends `alias real = …; alias sreal = …;`):
//   theta: units × m solutions (selected features in rank order, bias last)
//   idx:   units × m indices (bias index last)
// Outputs: wt (units × p.f, row-major: unit u's weights; the host zero-fills it first) and
//   bias (units).
// Workgroup mapping: workgroup_id.y = unit, x walks the m entries, 256 per workgroup.

struct Params {
    m: u32, f: u32, pad0: u32, pad1: u32,
}

@group(0) @binding(0) var<storage, read> theta: array<sreal>;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> wt: array<real>;
@group(0) @binding(3) var<storage, read_write> bias: array<real>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let u = wg.y;
    let a = wg.x * 256u + lid.x;
    if (a >= p.m) { return; }
    let v = real(theta[u * p.m + a]);
    if (a + 1u == p.m) {
        bias[u] = v;
    } else {
        wt[u * p.f + idx[u * p.m + a]] = v;
    }
}
