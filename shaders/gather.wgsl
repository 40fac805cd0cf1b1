// gather.wgsl — builds each unit's (k+1)×(k+1) ridge system from the shared Gram matrix.
//
// Inputs (the host prepends its prelude: `alias real`, `alias sreal` = solve precision, and the constants of KernelParams, e.g. WG):
//   g:   one row block of G = X₁ᵀX₁, rows [p.g_r0, p.g_r1), row-major with ld p.ldg; only the
//        lower triangle (row ≥ col) is read
//   h:   H = Y_chunkᵀ X₁, units × p.ldg row-major
//   idx: units × m selected indices (bias index F last)
// Outputs: sys (units × m × m, row-major per unit, lower triangle written) with α added on the
// diagonal; diag (units × m) a copy of that diagonal for the singularity test; rhs (units × m) = H[u, idx] (written when p.write_rhs = 1).
// The host runs one pass per row block of G; an entry is written by the pass whose block holds
// its row max(idx[a], idx[b]).
// Workgroup mapping: WG (256) threads in x; the linear entry index (m² per system) spans
// workgroup_id.x and workgroup_id.y (the host splits it so that neither exceeds 65 535
// workgroups, m up to 5792); workgroup_id.z is the unit within the chunk.

struct Params {
    m: u32, ldg: u32, g_r0: u32, g_r1: u32,
    write_rhs: u32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<storage, read> g: array<real>;
@group(0) @binding(1) var<storage, read> h: array<real>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> sys: array<sreal>;
@group(0) @binding(4) var<storage, read_write> rhs: array<sreal>;
@group(0) @binding(5) var<uniform> p: Params;
@group(0) @binding(6) var<storage, read> alpha: array<sreal>; // alpha[0], exact in sreal
@group(0) @binding(7) var<storage, read_write> diag: array<sreal>; // units × m original diagonals

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let u = wg.z;
    let e = (wg.y * nwg.x + wg.x) * WG + lid.x;
    let m = p.m;
    if (e >= m * m) { return; }
    let a = e / m;
    let bcol = e % m;
    if (p.write_rhs == 1u && bcol == 0u) {
        rhs[u * m + a] = sreal(h[u * p.ldg + idx[u * m + a]]);
    }
    if (bcol > a) { return; }
    let ia = idx[u * m + a];
    let ib = idx[u * m + bcol];
    let hi = max(ia, ib);
    let lo = min(ia, ib);
    if (hi < p.g_r0 || hi >= p.g_r1) { return; }
    var v = sreal(g[(hi - p.g_r0) * p.ldg + lo]);
    if (a == bcol) {
        v = v + alpha[0];
        diag[u * m + a] = v;
    }
    sys[u * m * m + a * m + bcol] = v;
}
