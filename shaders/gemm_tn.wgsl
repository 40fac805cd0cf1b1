// gemm_tn.wgsl — tiled C (+)= Aᵀ B over a slice of rows.
//
// Inputs (the host prepends its prelude: `alias real = f32|f64;` and the constants of KernelParams;
// TILE = 64 and KT = 16 are assumed by the 16×16-thread, 4×4-outputs-per-thread mapping):
//   a: row-major matrix, element (r, i) at a[r * p.lda + p.a_off + i]
//   b: row-major matrix, element (r, j) at b[r * p.ldb + p.b_off + j]
//   c: row-major output, element (i, j) at c[i * p.ldc + j], i < p.m, j < p.n
//   C[i, j] = (p.accumulate ? C[i, j] : 0) + Σ_{r = p.r0}^{p.r1 - 1} A[r, i] · B[r, j]
// With p.lower_only = 1, workgroups whose 64×64 tile lies wholly above the diagonal of the
// global matrix (global row = i + p.diag_off) write nothing: the Gram matrix is symmetric and
// readers use its lower triangle.
// Workgroup mapping: 16×16 threads per workgroup compute a 64×64 tile of C, 4×4 outputs per
// thread; workgroup_id.x walks columns (j), workgroup_id.y walks rows (i). The row slice
// r1 − r0 is kept small by the host (≤ 512 rows on software adapters) so that no invocation
// runs more than ~15 000 loop trips (llvmpipe stops loops at 65 535 per invocation).

// Parameters and bindings a, b, c, p: gemm_params.wgsl, which the host places before this file.

var<workgroup> ta: array<real, KT * TILE>; // KT × TILE, (k, i) at k * TILE + i
var<workgroup> tb: array<real, KT * TILE>; // KT × TILE, (k, j) at k * TILE + j

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = wg.y * TILE;
    let j0 = wg.x * TILE;
    if (p.lower_only == 1u && i0 + p.diag_off + TILE - 1u < j0) {
        return; // uniform for the whole workgroup
    }
    let tid = lid.y * 16u + lid.x;
    var acc: array<real, 16>;
    for (var q = 0u; q < 16u; q++) { acc[q] = real(0.0); }
    var r = p.r0;
    loop {
        if (r >= p.r1) { break; }
        // each of the 256 threads loads 4 elements of each 16×64 tile
        for (var q = 0u; q < 4u; q++) {
            let e = tid + q * 256u; // 256 = 16 × 16 threads
            let kk = e / TILE;
            let col = e % TILE;
            let row = r + kk;
            var va = real(0.0);
            var vb = real(0.0);
            if (row < p.r1) {
                if (i0 + col < p.m) { va = a[row * p.lda + p.a_off + i0 + col]; }
                if (j0 + col < p.n) { vb = b[row * p.ldb + p.b_off + j0 + col]; }
            }
            ta[e] = va;
            tb[e] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KT; kk++) {
            let a0 = ta[kk * TILE + lid.y * 4u];
            let a1 = ta[kk * TILE + lid.y * 4u + 1u];
            let a2 = ta[kk * TILE + lid.y * 4u + 2u];
            let a3 = ta[kk * TILE + lid.y * 4u + 3u];
            let b0 = tb[kk * TILE + lid.x * 4u];
            let b1 = tb[kk * TILE + lid.x * 4u + 1u];
            let b2 = tb[kk * TILE + lid.x * 4u + 2u];
            let b3 = tb[kk * TILE + lid.x * 4u + 3u];
            acc[0] += a0 * b0; acc[1] += a0 * b1; acc[2] += a0 * b2; acc[3] += a0 * b3;
            acc[4] += a1 * b0; acc[5] += a1 * b1; acc[6] += a1 * b2; acc[7] += a1 * b3;
            acc[8] += a2 * b0; acc[9] += a2 * b1; acc[10] += a2 * b2; acc[11] += a2 * b3;
            acc[12] += a3 * b0; acc[13] += a3 * b1; acc[14] += a3 * b2; acc[15] += a3 * b3;
        }
        workgroupBarrier();
        r += KT;
    }
    for (var q = 0u; q < 16u; q++) {
        let i = i0 + lid.y * 4u + q / 4u;
        let j = j0 + lid.x * 4u + q % 4u;
        if (i < p.m && j < p.n) {
            let idx = i * p.ldc + j;
            if (p.accumulate == 1u) {
                c[idx] = c[idx] + acc[q];
            } else {
                c[idx] = acc[q];
            }
        }
    }
}
