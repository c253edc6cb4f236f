//! Random numbers for the workload: xoshiro256++ seeded with SplitMix64,
//! fixed here so that a seed keeps meaning the same workload whatever `rand`
//! does, and hourly alias tables for O(1) weighted draws.
//!
//! Every draw the generator makes goes through [`Rng`]; changing the number
//! or order of draws anywhere changes every stream that follows.

#[derive(Debug, Clone)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        let mut x = seed ^ 0x6375_7374_6f73_2121;
        let mut s = [0u64; 4];
        for v in &mut s {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *v = z ^ (z >> 31);
        }
        Self { s }
    }

    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (`n > 0`; multiply-shift, bias below 2^-40 here).
    #[inline]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    #[inline]
    pub(crate) fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    #[inline]
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Per mille.
    #[inline]
    pub(crate) fn permille(&mut self, p: u64) -> bool {
        self.below(1000) < p
    }

    /// Standard normal (Box–Muller), for setup.
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Approximately standard normal (Irwin–Hall, 4 terms from one draw), cheap.
    #[inline]
    pub(crate) fn approx_normal(&mut self) -> f64 {
        let x = self.next_u64();
        let s = (x & 0xFFFF) + ((x >> 16) & 0xFFFF) + ((x >> 32) & 0xFFFF) + (x >> 48);
        (s as f64 / 65_535.0 - 2.0) * 1.732_050_807_568_877_2
    }

    /// Exponential with mean 1.
    #[inline]
    pub(crate) fn exp(&mut self) -> f64 {
        -(1.0 - self.unit()).ln()
    }

    #[inline]
    pub(crate) fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.index(xs.len())]
    }

    pub(crate) fn choose<T: Copy>(&mut self, table: &[(T, u32)]) -> T {
        let total: u64 = table.iter().map(|&(_, w)| u64::from(w)).sum();
        let mut r = self.below(total);
        for &(v, w) in table {
            if r < u64::from(w) {
                return v;
            }
            r -= u64::from(w);
        }
        table[table.len() - 1].0
    }
}

/// Weighted choice among a fixed set of members, with weights that depend
/// on the hour of the day: one alias table (Walker/Vose) per hour, O(1) per
/// draw.
#[derive(Debug, Clone)]
pub(crate) struct HourlyPick {
    members: Vec<u32>,
    totals: [f64; 24],
    /// Per hour: (probability of keeping slot i, alias of slot i).
    tables: Vec<Vec<(f64, u32)>>,
}

impl HourlyPick {
    /// `weight(member, hour)` is the weight of a member at an hour.
    pub(crate) fn new(members: Vec<u32>, weight: impl Fn(usize, usize) -> f64) -> Self {
        let mut totals = [0.0; 24];
        let tables = (0..24)
            .map(|h| {
                let weights: Vec<f64> = members.iter().map(|&i| weight(i as usize, h)).collect();
                totals[h] = weights.iter().sum();
                alias_table(&weights)
            })
            .collect();
        Self {
            members,
            totals,
            tables,
        }
    }

    pub(crate) fn members(&self) -> &[u32] {
        &self.members
    }

    /// The sum of the weights at `hour`.
    pub(crate) fn total(&self, hour: usize) -> f64 {
        self.totals[hour]
    }

    /// A member, or `None` when no member has weight at `hour`.
    pub(crate) fn sample(&self, rng: &mut Rng, hour: usize) -> Option<usize> {
        let table = &self.tables[hour];
        if table.is_empty() {
            return None;
        }
        let x = rng.next_u64();
        let i = ((u128::from(x >> 11) * table.len() as u128) >> 53) as usize;
        let u = (x & 0x7FF) as f64 / 2048.0;
        let (keep, alias) = table[i];
        let slot = if u < keep { i } else { alias as usize };
        Some(self.members[slot] as usize)
    }
}

/// Vose's alias method: slot `i` keeps itself with probability `.0`, else
/// goes to `.1`. Empty for no weights or a zero total.
fn alias_table(weights: &[f64]) -> Vec<(f64, u32)> {
    let n = weights.len();
    let total: f64 = weights.iter().sum();
    if n == 0 || total <= 0.0 {
        return Vec::new();
    }
    let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
    let mut table: Vec<(f64, u32)> = (0..n as u32).map(|i| (1.0, i)).collect();
    let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| scaled[i] < 1.0);
    while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
        small.pop();
        table[s] = (scaled[s], l as u32);
        scaled[l] -= 1.0 - scaled[s];
        if scaled[l] < 1.0 {
            large.pop();
            small.push(l);
        }
    }
    table
}
