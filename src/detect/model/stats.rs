//! The binomial tail the model-abuse signals test counts with.

/// `P(X >= k)` for `X ~ Binomial(n, p)`, summed term by term (n is a
/// caller's history, a few dozen).
pub fn binomial_tail(n: usize, k: usize, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    if k as f64 <= n as f64 * p {
        // At or below the mean: the tail is large; no test fires on it.
        return 1.0;
    }
    let q = 1.0 - p;
    // pmf(0) = q^n, pmf(j+1) = pmf(j) · (n-j)/(j+1) · p/q.
    let ratio = p / q;
    let mut pmf = q.powi(n as i32);
    let mut tail = 0.0;
    for j in 0..=n {
        if j >= k {
            tail += pmf;
        }
        pmf *= (n - j) as f64 / (j + 1) as f64 * ratio;
    }
    tail.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_tail_matches_hand_sums() {
        // P(X >= 2), n = 3, p = 0.5: (3 + 1) / 8.
        assert!((binomial_tail(3, 2, 0.5) - 0.5).abs() < 1e-12);
        assert!((binomial_tail(10, 0, 0.1) - 1.0).abs() < 1e-12);
        // P(X >= 3), n = 4, p = 0.25: 4 · 0.25³ · 0.75 + 0.25⁴.
        assert!((binomial_tail(4, 3, 0.25) - 0.050_781_25).abs() < 1e-12);
        assert_eq!(binomial_tail(5, 6, 0.5), 0.0);
        // 8 of 32 at a 1% rate is far in the tail.
        assert!(binomial_tail(32, 8, 0.01) < 1e-8);
        assert!(binomial_tail(32, 1, 0.01) > 0.2);
    }
}
