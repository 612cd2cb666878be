//! The mixing kernel: the sum of K speakers' 20 ms frames (the view's mix), and for each
//! speaker the sum without its own frame (its mix-minus: no one hears themselves), all
//! saturated to 16 bits. SIMD through `wide` (eight lanes of i32: SSE2/AVX2 on x86-64,
//! NEON on ARM), and a scalar twin that tests hold it to, sample for sample.

use wide::{i16x8, i32x8};

/// Samples in one 20 ms frame at 48 kHz, mono.
pub const FRAME: usize = 960;

/// Adds `src` into `acc` (SIMD).
pub fn accumulate(acc: &mut [i32], src: &[i16]) {
    let n = acc.len().min(src.len());
    let (acc, src) = (&mut acc[..n], &src[..n]);
    let mut a = acc.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (a8, s8) in (&mut a).zip(&mut s) {
        let sum = i32x8::from(<[i32; 8]>::try_from(&*a8).unwrap_or([0; 8]))
            + i32x8::from_i16x8(i16x8::from_slice_unaligned(s8));
        a8.copy_from_slice(&sum.to_array());
    }
    scalar::accumulate(a.into_remainder(), s.remainder());
}

/// Writes `acc` less `minus` (when given), saturated, into `out` (SIMD).
pub fn finish(acc: &[i32], minus: Option<&[i16]>, out: &mut [i16]) {
    let n = acc
        .len()
        .min(out.len())
        .min(minus.map_or(usize::MAX, <[i16]>::len));
    let (acc, out) = (&acc[..n], &mut out[..n]);
    let mut a = acc.chunks_exact(8);
    let mut o = out.chunks_exact_mut(8);
    let mut done = 0;
    for (a8, o8) in (&mut a).zip(&mut o) {
        let mut v = i32x8::from(<[i32; 8]>::try_from(a8).unwrap_or([0; 8]));
        if let Some(m) = minus {
            v -= i32x8::from_i16x8(i16x8::from_slice_unaligned(&m[done..done + 8]));
        }
        o8.copy_from_slice(&i16x8::from_i32x8_saturate(v).to_array());
        done += 8;
    }
    scalar::finish(a.remainder(), minus.map(|m| &m[done..]), o.into_remainder());
}

/// The same, one sample at a time.
pub mod scalar {
    /// Adds `src` into `acc`.
    pub fn accumulate(acc: &mut [i32], src: &[i16]) {
        for (a, s) in acc.iter_mut().zip(src) {
            *a += i32::from(*s);
        }
    }

    /// Writes `acc` less `minus`, saturated, into `out`.
    pub fn finish(acc: &[i32], minus: Option<&[i16]>, out: &mut [i16]) {
        for (i, (a, o)) in acc.iter().zip(out.iter_mut()).enumerate() {
            let m = minus.and_then(|m| m.get(i)).map_or(0, |s| i32::from(*s));
            *o = (a - m).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
        }
    }
}

/// Mixes `inputs` (one frame each): the mix of all into `mix`, and into `minus[i]` the
/// mix without input `i`. `acc` is scratch space of the frames' length.
pub fn mix_minus(inputs: &[&[i16]], acc: &mut [i32], mix: &mut [i16], minus: &mut [Vec<i16>]) {
    acc.fill(0);
    for s in inputs {
        accumulate(acc, s);
    }
    finish(acc, None, mix);
    for (s, out) in inputs.iter().zip(minus.iter_mut()) {
        finish(acc, Some(s), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: u32, n: usize, loud: bool) -> Vec<i16> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if loud {
                    // Near full scale, so sums saturate.
                    if x & 1 == 0 {
                        i16::MAX - (x % 50) as i16
                    } else {
                        i16::MIN + (x % 50) as i16
                    }
                } else {
                    x as i16
                }
            })
            .collect()
    }

    #[test]
    fn simd_and_scalar_mixes_are_identical() {
        // Lengths that are and are not multiples of the lanes; quiet and saturating.
        for (n, loud) in [
            (FRAME, false),
            (FRAME, true),
            (37, false),
            (7, true),
            (0, false),
        ] {
            let inputs: Vec<Vec<i16>> = (0..4).map(|i| noise(i * 7919 + 1, n, loud)).collect();
            let mut simd_acc = vec![0i32; n];
            let mut scalar_acc = vec![0i32; n];
            for s in &inputs {
                accumulate(&mut simd_acc, s);
                scalar::accumulate(&mut scalar_acc, s);
            }
            assert_eq!(simd_acc, scalar_acc);
            for minus in [None, Some(&inputs[2][..])] {
                let mut a = vec![0i16; n];
                let mut b = vec![0i16; n];
                finish(&simd_acc, minus, &mut a);
                scalar::finish(&scalar_acc, minus, &mut b);
                assert_eq!(a, b, "n {n} loud {loud}");
            }
        }
    }

    #[test]
    fn a_mix_minus_leaves_out_its_own_speaker() {
        let a = vec![1000i16; 16];
        let b = vec![-300i16; 16];
        let c = vec![20_000i16; 16];
        let mut acc = vec![0i32; 16];
        let mut mix = vec![0i16; 16];
        let mut minus = vec![vec![0i16; 16]; 3];
        mix_minus(&[&a, &b, &c], &mut acc, &mut mix, &mut minus);
        assert_eq!(mix[0], 20_700);
        assert_eq!(minus[0][0], 19_700);
        assert_eq!(minus[1][0], 21_000);
        assert_eq!(minus[2][0], 700);
        // Saturation.
        let mut acc = vec![0i32; 16];
        mix_minus(&[&c, &c], &mut acc, &mut mix, &mut minus[..2]);
        assert_eq!(mix[5], i16::MAX);
        assert_eq!(minus[0][5], 20_000);
    }
}
