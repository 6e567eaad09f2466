"""CUDA C source of the challenge kernels, written so that the same text also builds with gcc.

The CuPy backend hands :data:`SOURCE` to ``cupy.RawModule`` (NVRTC); the CPU test suite
(``tests/unit/test_kernels_cpu.py``) writes the very same string to a file, builds it with
``g++ -x c++ -shared`` and calls the kernels through ``ctypes``. Only three macros differ between
the two builds:

* ``BL_FN``: ``__device__ __forceinline__`` on the GPU, ``static inline`` on the host;
* ``BL_KERNEL``: ``extern "C" __global__`` on the GPU, ``extern "C"`` on the host;
* ``BL_FOR_EACH(i, count)``: a grid-stride loop on the GPU, a plain serial loop on the host.

Everything else, the splitmix64 entries, SHA-256 (FIPS 180-4, written from the standard), the
message layout of a row leaf and a Merkle node, runs the same code on both. The source includes no
header: NVRTC has no C library, so the integer types are spelled out (``unsigned long long`` and
``unsigned int`` are 64 and 32 bits on every CUDA target and on LP64 Linux).

Kernels (all ``extern "C"``, so their names are not mangled):

``bl_generate(float* out, u64 count, u64 key, u64 start, u64 v)``
    ``out[idx] = value(key ^ (start + idx))`` for ``idx < count``. ``A_t`` is one call with
    ``key_t`` and ``start = first_row * k``; ``B_t`` is one call with ``key_t ^ 2**63``, start 0.
``bl_generate_rows(float* out, const u64* rows, u64 nrows, u64 k, u64 key, u64 v)``
    rows ``rows[0..nrows)`` of ``A_t`` (any order), ``nrows x k``, for openings.
``bl_row_leaves_f32(const float* c, u64 rows, u64 n, u32 stage, u32 first_row, u8* out)``
    one thread per row: ``SHA-256(0x00 || u32le(stage) || u32le(first_row + r) || row_r)``, the
    row read from the float32 product and converted exactly to int32 on load. ``out`` gets
    ``rows x 32`` bytes.
``bl_row_leaves_i32(const int* c, ...)``
    the same over an int32 matrix.
``bl_merkle_level(u8* nodes, u64 src, u64 dst, u64 count)``
    ``node[dst + i] = SHA-256(0x01 || node[src + 2i] || node[src + 2i + 1])`` for ``i < count``,
    nodes being 32-byte slots of one buffer (see :func:`merkle_plan`).
``bl_sha256_batch(const u8* data, const u64* offsets, const u64* lengths, u64 count, u8* out)``
    plain SHA-256 of ``count`` byte strings: the entry point the NIST vectors test.
``bl_to_int32(const float* src, int* dst, u64 count)``
    exact float32 -> int32 for integer-valued floats.
"""

from __future__ import annotations

#: names of the kernels in :data:`SOURCE`, as ``RawModule.get_function`` takes them
KERNEL_NAMES = (
    "bl_generate",
    "bl_generate_rows",
    "bl_row_leaves_f32",
    "bl_row_leaves_i32",
    "bl_merkle_level",
    "bl_sha256_batch",
    "bl_to_int32",
)

#: NVRTC options. No fast-math: the float conversions must round exactly as NumPy's do.
NVRTC_OPTIONS: tuple[str, ...] = ()

#: bytes of one digest (leaf or node) in the device buffers
DIGEST_BYTES = 32

SOURCE = r"""
/* ByteLeap challenge kernels (SPEC 4.2, 4.3). One source for NVRTC and for g++: see kernels.py. */

typedef unsigned long long bl_u64;
typedef unsigned int bl_u32;
typedef unsigned char bl_u8;

#ifdef __CUDACC__
#define BL_FN __device__ __forceinline__
#define BL_KERNEL extern "C" __global__
#define BL_CONST __constant__
#define BL_UNROLL _Pragma("unroll")
#define BL_FOR_EACH(i, count)                                                  \
    for (bl_u64 i = (bl_u64)blockIdx.x * blockDim.x + threadIdx.x; i < (count); \
         i += (bl_u64)blockDim.x * gridDim.x)
#else
#define BL_FN static inline
#define BL_KERNEL extern "C"
#define BL_CONST static const
#define BL_UNROLL
#define BL_FOR_EACH(i, count) for (bl_u64 i = 0; i < (count); ++i)
#endif

/* ---------------------------------------------------------------- entries (SPEC 4.2) */

BL_FN bl_u64 bl_splitmix64_finalize(bl_u64 x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* value = (((x >> 32) * (2v + 1)) >> 32) - v, on unsigned 64-bit; the subtraction is done in
   float32 exactly like the NumPy reference (convert, then subtract), so even out-of-range test
   values of v round identically. */
BL_FN float bl_entry(bl_u64 key, bl_u64 counter, bl_u64 v) {
    bl_u64 x = bl_splitmix64_finalize(key ^ counter);
    bl_u64 r = ((x >> 32) * (2ULL * v + 1ULL)) >> 32;
    return (float)r - (float)v;
}

BL_KERNEL void bl_generate(float* out, bl_u64 count, bl_u64 key, bl_u64 start, bl_u64 v) {
    BL_FOR_EACH(idx, count) {
        out[idx] = bl_entry(key, start + idx, v);
    }
}

BL_KERNEL void bl_generate_rows(float* out, const bl_u64* rows, bl_u64 nrows, bl_u64 k,
                                bl_u64 key, bl_u64 v) {
    BL_FOR_EACH(idx, nrows * k) {
        bl_u64 r = idx / k;
        bl_u64 l = idx - r * k;
        out[idx] = bl_entry(key, rows[r] * k + l, v);
    }
}

BL_KERNEL void bl_to_int32(const float* src, int* dst, bl_u64 count) {
    BL_FOR_EACH(i, count) {
        dst[i] = (int)src[i];
    }
}

/* ---------------------------------------------------------------- SHA-256 (FIPS 180-4) */

BL_CONST bl_u32 BL_SHA256_K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u};

BL_FN bl_u32 bl_rotr(bl_u32 x, int n) { return (x >> n) | (x << (32 - n)); }

BL_FN void bl_sha256_init(bl_u32 s[8]) {
    s[0] = 0x6a09e667u;
    s[1] = 0xbb67ae85u;
    s[2] = 0x3c6ef372u;
    s[3] = 0xa54ff53au;
    s[4] = 0x510e527fu;
    s[5] = 0x9b05688cu;
    s[6] = 0x1f83d9abu;
    s[7] = 0x5be0cd19u;
}

/* One compression of the 16 big-endian message words w (overwritten: the schedule W_t is kept
   in a rolling window of 16 words, W_t living in w[t % 16]). */
BL_FN void bl_sha256_compress(bl_u32 s[8], bl_u32 w[16]) {
    bl_u32 a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
    BL_UNROLL
    for (int t = 0; t < 64; ++t) {
        bl_u32 wt;
        if (t < 16) {
            wt = w[t];
        } else {
            bl_u32 w2 = w[(t - 2) & 15];
            bl_u32 w15 = w[(t - 15) & 15];
            bl_u32 sigma1 = bl_rotr(w2, 17) ^ bl_rotr(w2, 19) ^ (w2 >> 10);
            bl_u32 sigma0 = bl_rotr(w15, 7) ^ bl_rotr(w15, 18) ^ (w15 >> 3);
            wt = sigma1 + w[(t - 7) & 15] + sigma0 + w[t & 15];
            w[t & 15] = wt;
        }
        bl_u32 big_sigma1 = bl_rotr(e, 6) ^ bl_rotr(e, 11) ^ bl_rotr(e, 25);
        bl_u32 choose = (e & f) ^ (~e & g);
        bl_u32 t1 = h + big_sigma1 + choose + BL_SHA256_K[t] + wt;
        bl_u32 big_sigma0 = bl_rotr(a, 2) ^ bl_rotr(a, 13) ^ bl_rotr(a, 22);
        bl_u32 majority = (a & b) ^ (a & c) ^ (b & c);
        bl_u32 t2 = big_sigma0 + majority;
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s[0] += a;
    s[1] += b;
    s[2] += c;
    s[3] += d;
    s[4] += e;
    s[5] += f;
    s[6] += g;
    s[7] += h;
}

BL_FN void bl_sha256_store(const bl_u32 s[8], bl_u8* out) {
    for (int i = 0; i < 8; ++i) {
        out[4 * i + 0] = (bl_u8)(s[i] >> 24);
        out[4 * i + 1] = (bl_u8)(s[i] >> 16);
        out[4 * i + 2] = (bl_u8)(s[i] >> 8);
        out[4 * i + 3] = (bl_u8)s[i];
    }
}

/* Blocks of a padded message of len bytes: the message, the 0x80 byte, zeros, the 64-bit length. */
BL_FN bl_u64 bl_sha256_block_count(bl_u64 len) { return (len + 9 + 63) / 64; }

/* Word `word` (big-endian) of the padded message `msg` of `len` bytes, `nwords` words in all. */
BL_FN bl_u32 bl_padded_word(const bl_u8* msg, bl_u64 len, bl_u64 word, bl_u64 nwords) {
    bl_u64 bits = len * 8;
    if (word == nwords - 2) return (bl_u32)(bits >> 32);
    if (word == nwords - 1) return (bl_u32)bits;
    bl_u32 w = 0;
    for (int j = 0; j < 4; ++j) {
        bl_u64 p = word * 4 + j;
        bl_u32 byte = p < len ? (bl_u32)msg[p] : (p == len ? 0x80u : 0u);
        w = (w << 8) | byte;
    }
    return w;
}

BL_FN void bl_sha256_message(const bl_u8* msg, bl_u64 len, bl_u8* out) {
    bl_u32 s[8];
    bl_sha256_init(s);
    bl_u64 blocks = bl_sha256_block_count(len);
    bl_u64 nwords = 16 * blocks;
    for (bl_u64 b = 0; b < blocks; ++b) {
        bl_u32 w[16];
        BL_UNROLL
        for (int i = 0; i < 16; ++i) w[i] = bl_padded_word(msg, len, 16 * b + i, nwords);
        bl_sha256_compress(s, w);
    }
    bl_sha256_store(s, out);
}

BL_KERNEL void bl_sha256_batch(const bl_u8* data, const bl_u64* offsets, const bl_u64* lengths,
                               bl_u64 count, bl_u8* out) {
    BL_FOR_EACH(i, count) {
        bl_sha256_message(data + offsets[i], lengths[i], out + 32 * i);
    }
}

/* ---------------------------------------------------------------- commitments (SPEC 4.3) */

/* node = SHA-256(0x01 || left || right): a 65-byte message. */
BL_KERNEL void bl_merkle_level(bl_u8* nodes, bl_u64 src, bl_u64 dst, bl_u64 count) {
    BL_FOR_EACH(i, count) {
        bl_u8 msg[65];
        const bl_u8* pair = nodes + 32 * (src + 2 * i);
        msg[0] = 0x01;
        for (int j = 0; j < 64; ++j) msg[1 + j] = pair[j];
        bl_sha256_message(msg, 65, nodes + 32 * (dst + i));
    }
}

/* A product entry as the 32-bit pattern of its int32 value. The float32 product holds integers
   below 2**24 in magnitude, so the conversion is exact. */
BL_FN bl_u32 bl_load(const int* p) { return (bl_u32)*p; }
BL_FN bl_u32 bl_load(const float* p) { return (bl_u32)(int)*p; }

/* The leaf message is 0x00 || u32le(stage) || u32le(index) || row as int32 LE. Read it as the
   byte 0x00 followed by the 32-bit values q_0 = stage, q_1 = index, q_{2+j} = row[j]: with
   q_{-1} = 0, big-endian word W (W < n + 2) is the last byte of q_{W-1} followed by the first
   three bytes of q_W. Here q1(j) = q_{j-1}, so that the index stays unsigned. */
template <typename T>
BL_FN bl_u32 bl_leaf_q1(const T* row, bl_u32 stage, bl_u32 index, bl_u64 j) {
    if (j == 0) return 0u;
    if (j == 1) return stage;
    if (j == 2) return index;
    return bl_load(row + (j - 3));
}

/* Last byte of little-endian `prev`, then the first three bytes of little-endian `cur`. */
BL_FN bl_u32 bl_join(bl_u32 prev, bl_u32 cur) {
    return (prev & 0xff000000u) | ((cur & 0xffu) << 16) | (cur & 0xff00u) | ((cur >> 16) & 0xffu);
}

/* Any word of the padded leaf message (q = n + 2 values, 1 + 4q bytes). */
template <typename T>
BL_FN bl_u32 bl_leaf_word(const T* row, bl_u32 stage, bl_u32 index, bl_u64 q, bl_u64 word,
                          bl_u64 nwords) {
    if (word < q) return bl_join(bl_leaf_q1(row, stage, index, word),
                                 bl_leaf_q1(row, stage, index, word + 1));
    if (word == q) return (bl_leaf_q1(row, stage, index, q) & 0xff000000u) | 0x00800000u;
    bl_u64 bits = (1 + 4 * q) * 8;
    if (word == nwords - 2) return (bl_u32)(bits >> 32);
    if (word == nwords - 1) return (bl_u32)bits;
    return 0u;
}

template <typename T>
BL_FN void bl_leaf_hash(const T* row, bl_u64 n, bl_u32 stage, bl_u32 index, bl_u8* out) {
    bl_u64 q = n + 2;
    bl_u64 blocks = bl_sha256_block_count(1 + 4 * q);
    bl_u64 nwords = 16 * blocks;
    bl_u32 s[8];
    bl_sha256_init(s);
    for (bl_u64 b = 0; b < blocks; ++b) {
        bl_u32 w[16];
        bl_u64 first = 16 * b;
        if (b > 0 && first + 16 <= q) {
            /* every word of the block is row data: word W joins row[W - 3] and row[W - 2] */
            const T* p = row + (first - 3);
            bl_u32 prev = bl_load(p);
            BL_UNROLL
            for (int i = 0; i < 16; ++i) {
                bl_u32 cur = bl_load(p + 1 + i);
                w[i] = bl_join(prev, cur);
                prev = cur;
            }
        } else {
            BL_UNROLL
            for (int i = 0; i < 16; ++i) {
                w[i] = bl_leaf_word(row, stage, index, q, first + i, nwords);
            }
        }
        bl_sha256_compress(s, w);
    }
    bl_sha256_store(s, out);
}

BL_KERNEL void bl_row_leaves_f32(const float* c, bl_u64 rows, bl_u64 n, bl_u32 stage,
                                 bl_u32 first_row, bl_u8* out) {
    BL_FOR_EACH(r, rows) {
        bl_leaf_hash(c + r * n, n, stage, (bl_u32)(first_row + r), out + 32 * r);
    }
}

BL_KERNEL void bl_row_leaves_i32(const int* c, bl_u64 rows, bl_u64 n, bl_u32 stage,
                                 bl_u32 first_row, bl_u8* out) {
    BL_FOR_EACH(r, rows) {
        bl_leaf_hash(c + r * n, n, stage, (bl_u32)(first_row + r), out + 32 * r);
    }
}
"""


def merkle_plan(m: int) -> list[tuple[int, int, int]]:
    """``(src, dst, count)`` of each ``bl_merkle_level`` launch for ``m`` leaves (a power of two).

    The device buffer holds ``2m - 1`` digest slots: the ``m`` leaves at slot 0, the next level
    right after them, and so on; the root is the last slot, ``2m - 2``."""
    if m < 1 or m & (m - 1):
        raise ValueError("a perfect Merkle tree needs a power-of-two number of leaves")
    plan = []
    src, count = 0, m
    while count > 1:
        plan.append((src, src + count, count // 2))
        src, count = src + count, count // 2
    return plan


def node_slots(m: int) -> int:
    """Digest slots of the device tree for ``m`` leaves: ``2m - 1``, the root in the last."""
    return 2 * m - 1
