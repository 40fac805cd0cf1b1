// gemm_tn_wide.wgsl — tiled C (+)= Aᵀ B over a slice of rows, 128 × 128 tiles for hardware GPUs
// (the same contract as gemm_tn.wgsl, which software adapters run).
//
// Inputs (the host prepends its prelude: `alias real = f32|f64;` and the constants of KernelParams,
// of which this kernel uses none: its shape is fixed below):
//   a: row-major matrix, element (r, i) at a[r * p.lda + p.a_off + i]
//   b: row-major matrix, element (r, j) at b[r * p.ldb + p.b_off + j]
//   c: row-major output, element (i, j) at c[i * p.ldc + j], i < p.m, j < p.n
//   C[i, j] = (p.accumulate ? C[i, j] : 0) + Σ_{r = p.r0}^{p.r1 - 1} A[r, i] · B[r, j]
// With p.lower_only = 1, workgroups whose 128 × 128 tile lies wholly above the diagonal of the
// global matrix (global row = i + p.diag_off) write nothing: the Gram matrix is symmetric and
// readers use its lower triangle.
// Workgroup mapping: 16 × 16 threads compute a 128 × 128 tile of C; workgroup_id.x walks columns
// (j), workgroup_id.y walks rows (i). Thread (ty, tx) = (lid.y, lid.x) holds 8 × 8 outputs in 16
// vec4 registers: rows 4ty..4ty+3 and 64+4ty..64+4ty+3, columns 4tx..4tx+3 and 64+4tx..64+4tx+3
// (so the 16 threads of a row read 16 consecutive vec4 of workgroup memory: no bank conflicts).
// The reduction walks 8 rows per step: each thread loads one vec4 of A's and one of B's 8 × 128
// slice (thread tid: slice row tid / 32, columns 4 (tid % 32)..+3; consecutive threads read
// consecutive addresses), the next step's loads issued before this step's arithmetic.
// Hardware adapters only: the host gives it 4 096 reduction rows per dispatch (512 steps).

// Parameters and bindings a, b, c, p: gemm_params.wgsl, which the host places before this file.

const WIDE: u32 = 128u;
const STEP: u32 = 8u;
var<workgroup> ta: array<vec4<real>, 256>; // STEP × 32 vec4, (k, v) at k * 32 + v: A[r + k, 4v..4v+3]
var<workgroup> tb: array<vec4<real>, 256>; // the same for B

// Four consecutive elements of row `row` from column `col` (zeros outside the matrix or slice).
fn load_a(row: u32, col: u32) -> vec4<real> {
    var v = vec4<real>(real(0.0));
    if (row < p.r1) {
        let o = row * p.lda + p.a_off + col;
        if (col < p.m) { v.x = a[o]; }
        if (col + 1u < p.m) { v.y = a[o + 1u]; }
        if (col + 2u < p.m) { v.z = a[o + 2u]; }
        if (col + 3u < p.m) { v.w = a[o + 3u]; }
    }
    return v;
}

fn load_b(row: u32, col: u32) -> vec4<real> {
    var v = vec4<real>(real(0.0));
    if (row < p.r1) {
        let o = row * p.ldb + p.b_off + col;
        if (col < p.n) { v.x = b[o]; }
        if (col + 1u < p.n) { v.y = b[o + 1u]; }
        if (col + 2u < p.n) { v.z = b[o + 2u]; }
        if (col + 3u < p.n) { v.w = b[o + 3u]; }
    }
    return v;
}

// Writes (or adds) four outputs of row i from column j on.
fn store(i: u32, j: u32, v: vec4<real>) {
    if (i >= p.m) { return; }
    let o = i * p.ldc + j;
    for (var e = 0u; e < 4u; e++) {
        if (j + e < p.n) {
            if (p.accumulate == 1u) {
                c[o + e] = c[o + e] + v[e];
            } else {
                c[o + e] = v[e];
            }
        }
    }
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = wg.y * WIDE;
    let j0 = wg.x * WIDE;
    if (p.lower_only == 1u && i0 + p.diag_off + WIDE - 1u < j0) {
        return; // uniform for the whole workgroup
    }
    let tid = lid.y * 16u + lid.x;
    let lk = tid / 32u;
    let lc = (tid % 32u) * 4u;
    let z = vec4<real>(real(0.0));
    // row q of the thread's outputs: cq_lo (columns 4tx..) and cq_hi (columns 64+4tx..)
    var c0_lo = z; var c0_hi = z; var c1_lo = z; var c1_hi = z;
    var c2_lo = z; var c2_hi = z; var c3_lo = z; var c3_hi = z;
    var c4_lo = z; var c4_hi = z; var c5_lo = z; var c5_hi = z;
    var c6_lo = z; var c6_hi = z; var c7_lo = z; var c7_hi = z;
    var na = load_a(p.r0 + lk, i0 + lc);
    var nb = load_b(p.r0 + lk, j0 + lc);
    var r = p.r0;
    loop {
        if (r >= p.r1) { break; }
        ta[tid] = na;
        tb[tid] = nb;
        workgroupBarrier();
        na = load_a(r + STEP + lk, i0 + lc);
        nb = load_b(r + STEP + lk, j0 + lc);
        for (var k = 0u; k < STEP; k++) {
            let a_lo = ta[k * 32u + lid.y];
            let a_hi = ta[k * 32u + 16u + lid.y];
            let b_lo = tb[k * 32u + lid.x];
            let b_hi = tb[k * 32u + 16u + lid.x];
            c0_lo += a_lo.x * b_lo; c0_hi += a_lo.x * b_hi;
            c1_lo += a_lo.y * b_lo; c1_hi += a_lo.y * b_hi;
            c2_lo += a_lo.z * b_lo; c2_hi += a_lo.z * b_hi;
            c3_lo += a_lo.w * b_lo; c3_hi += a_lo.w * b_hi;
            c4_lo += a_hi.x * b_lo; c4_hi += a_hi.x * b_hi;
            c5_lo += a_hi.y * b_lo; c5_hi += a_hi.y * b_hi;
            c6_lo += a_hi.z * b_lo; c6_hi += a_hi.z * b_hi;
            c7_lo += a_hi.w * b_lo; c7_hi += a_hi.w * b_hi;
        }
        workgroupBarrier();
        r += STEP;
    }
    let ri = i0 + 4u * lid.y;
    let cj = j0 + 4u * lid.x;
    store(ri, cj, c0_lo); store(ri, cj + 64u, c0_hi);
    store(ri + 1u, cj, c1_lo); store(ri + 1u, cj + 64u, c1_hi);
    store(ri + 2u, cj, c2_lo); store(ri + 2u, cj + 64u, c2_hi);
    store(ri + 3u, cj, c3_lo); store(ri + 3u, cj + 64u, c3_hi);
    store(ri + 64u, cj, c4_lo); store(ri + 64u, cj + 64u, c4_hi);
    store(ri + 65u, cj, c5_lo); store(ri + 65u, cj + 64u, c5_hi);
    store(ri + 66u, cj, c6_lo); store(ri + 66u, cj + 64u, c6_hi);
    store(ri + 67u, cj, c7_lo); store(ri + 67u, cj + 64u, c7_hi);
}
