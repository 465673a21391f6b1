;; fedsim's float kernels: FedAvg's running sum and mean, and the workers' perturbation,
;; four floats at a time (WebAssembly SIMD). Plain JS loops over typed arrays run one element
;; at a time (2 to 4 ns an element on the benchmark machine); these run at about memory
;; speed. src/payload/kernels.ts copies data through a small staging area of this module's
;; memory. Every result is bit for bit the one of the plain loops: f32 + f32 rounded once to
;; f32 (f32x4.add) equals JS's f64 sum rounded to f32, and promote/divide/demote are exact
;; IEEE operations. After editing, run `node scripts/build-kernels.js`.
(module
  (memory (export "memory") 1)
  ;; f64 acc[i] += f32 src[i], i < n
  (func (export "accumulate") (param $acc i32) (param $src i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $src) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (v128.store (local.get $acc)
          (f64x2.add (v128.load (local.get $acc)) (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $src)))))
        (v128.store offset=16 (local.get $acc)
          (f64x2.add (v128.load offset=16 (local.get $acc)) (f64x2.promote_low_f32x4 (v128.load64_zero offset=8 (local.get $src)))))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (local.set $acc (i32.add (local.get $acc) (i32.const 32)))
        (br $next)))
    (local.set $end (i32.add (local.get $src) (i32.shl (i32.and (local.get $n) (i32.const 3)) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (f64.store (local.get $acc) (f64.add (f64.load (local.get $acc)) (f64.promote_f32 (f32.load (local.get $src)))))
        (local.set $src (i32.add (local.get $src) (i32.const 4)))
        (local.set $acc (i32.add (local.get $acc) (i32.const 8)))
        (br $next))))
  ;; f32 dst[i] = f32(acc[i] / count), i < n
  (func (export "mean") (param $dst i32) (param $acc i32) (param $n i32) (param $count f64)
    (local $end i32) (local $c v128)
    (local.set $c (f64x2.splat (local.get $count)))
    (local.set $end (i32.add (local.get $dst) (i32.shl (i32.and (local.get $n) (i32.const -2)) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $dst) (local.get $end)))
        (v128.store64_lane 0 (local.get $dst) (f32x4.demote_f64x2_zero (f64x2.div (v128.load (local.get $acc)) (local.get $c))))
        (local.set $dst (i32.add (local.get $dst) (i32.const 8)))
        (local.set $acc (i32.add (local.get $acc) (i32.const 16)))
        (br $next)))
    (if (i32.and (local.get $n) (i32.const 1))
      (then (f32.store (local.get $dst) (f32.demote_f64 (f64.div (f64.load (local.get $acc)) (local.get $count)))))))
  ;; f32 dst[i] = src[i] + blk[(phase + i) % len], i < n; returns (phase + n) % len (dst and src may be the same)
  (func (export "addTiled") (param $dst i32) (param $src i32) (param $blk i32) (param $len i32) (param $phase i32) (param $n i32) (result i32)
    (local $seg i32) (local $p i32) (local $end i32)
    (block $out
      (loop $segment
        (br_if $out (i32.eqz (local.get $n)))
        (local.set $seg (i32.sub (local.get $len) (local.get $phase)))
        (if (i32.gt_u (local.get $seg) (local.get $n)) (then (local.set $seg (local.get $n))))
        (local.set $p (i32.add (local.get $blk) (i32.shl (local.get $phase) (i32.const 2))))
        (local.set $n (i32.sub (local.get $n) (local.get $seg)))
        (local.set $phase (i32.add (local.get $phase) (local.get $seg)))
        (if (i32.eq (local.get $phase) (local.get $len)) (then (local.set $phase (i32.const 0))))
        (local.set $end (i32.add (local.get $dst) (i32.shl (i32.and (local.get $seg) (i32.const -4)) (i32.const 2))))
        (block $done
          (loop $next
            (br_if $done (i32.ge_u (local.get $dst) (local.get $end)))
            (v128.store (local.get $dst) (f32x4.add (v128.load (local.get $src)) (v128.load (local.get $p))))
            (local.set $src (i32.add (local.get $src) (i32.const 16)))
            (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (br $next)))
        (local.set $end (i32.add (local.get $dst) (i32.shl (i32.and (local.get $seg) (i32.const 3)) (i32.const 2))))
        (block $done
          (loop $next
            (br_if $done (i32.ge_u (local.get $dst) (local.get $end)))
            (f32.store (local.get $dst) (f32.add (f32.load (local.get $src)) (f32.load (local.get $p))))
            (local.set $src (i32.add (local.get $src) (i32.const 4)))
            (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
            (local.set $p (i32.add (local.get $p) (i32.const 4)))
            (br $next)))
        (br $segment)))
    (local.get $phase)))
