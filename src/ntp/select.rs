//! Source selection (RFC 5905 §11.2): which sources tell the truth, and the
//! time they agree on.
//!
//! Each source's measurement stands for an interval, offset ± root
//! distance, that must contain the true time if the source is correct.
//! Marzullo's intersection finds the smallest interval that a majority of
//! them share, allowing for as few falsetickers as possible; sources whose
//! interval misses it are falsetickers. The survivors are combined with
//! weights 1/distance, and the best of them (lowest stratum, then shortest
//! distance) is the system peer whose stratum and refid the server shows.

use super::packet::Leap;

/// Truechimers are combined only while their root distance is within this
/// factor of the shortest.
const COMBINE_LIMIT: f64 = 3.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub offset: f64,
    pub root_distance: f64,
    /// The source's own jitter (its offsets' scatter), seconds.
    pub jitter: f64,
    pub stratum: u8,
    pub leap: Leap,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// Indices into the candidates.
    pub truechimers: Vec<usize>,
    pub falsetickers: Vec<usize>,
    /// Truechimers that the clustering left out of the combination.
    pub outliers: Vec<usize>,
    /// The index of the system peer.
    pub peer: usize,
    /// Combined offset, seconds.
    pub offset: f64,
    /// RMS of the truechimers' offsets around `offset`.
    pub jitter: f64,
    /// What the majority of the truechimers announce.
    pub leap: Leap,
}

/// Why there is no selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoSelection {
    /// No majority of the candidates agree.
    NoMajority,
    /// Fewer agreeing sources than required.
    TooFew { agreeing: usize, required: usize },
}

/// Select among `candidates`. `min_sources` agreeing sources are needed;
/// `previous_peer` is kept as peer while it is a truechimer not much worse
/// than the best, so that the refid does not flap between equals.
pub fn select(
    candidates: &[Candidate],
    min_sources: usize,
    previous_peer: Option<usize>,
) -> Result<Selection, NoSelection> {
    let n = candidates.len();
    let (low, high) = intersection(candidates).ok_or(NoSelection::NoMajority)?;
    let (truechimers, falsetickers): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| {
        let c = &candidates[i];
        c.offset - c.root_distance <= high && c.offset + c.root_distance >= low
    });
    if truechimers.len() < min_sources.max(1) {
        return Err(NoSelection::TooFew {
            agreeing: truechimers.len(),
            required: min_sources,
        });
    }
    let survivors = cluster(candidates, &truechimers);
    let outliers: Vec<usize> = truechimers
        .iter()
        .copied()
        .filter(|i| !survivors.contains(i))
        .collect();
    let merit = |i: usize| (candidates[i].stratum, candidates[i].root_distance);
    let best = *survivors
        .iter()
        .min_by(|&&a, &&b| {
            merit(a)
                .partial_cmp(&merit(b))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .expect("at least one truechimer");
    let peer = match previous_peer {
        Some(p)
            if survivors.contains(&p)
                && candidates[p].stratum <= candidates[best].stratum
                && candidates[p].root_distance <= 2.0 * candidates[best].root_distance =>
        {
            p
        }
        _ => best,
    };
    // Combine only sources nearly as good as the best (chrony's
    // combinelimit): an old measurement has a wide interval that no one can
    // call false, but it says little about the present.
    let shortest = survivors
        .iter()
        .map(|&i| candidates[i].root_distance)
        .fold(f64::INFINITY, f64::min);
    let combined: Vec<usize> = survivors
        .iter()
        .copied()
        .filter(|&i| candidates[i].root_distance <= COMBINE_LIMIT * shortest)
        .collect();
    let weight = |i: usize| 1.0 / candidates[i].root_distance.max(1e-9);
    let total: f64 = combined.iter().map(|&i| weight(i)).sum();
    let offset = combined
        .iter()
        .map(|&i| weight(i) * candidates[i].offset)
        .sum::<f64>()
        / total;
    let jitter = (combined
        .iter()
        .map(|&i| (candidates[i].offset - offset).powi(2))
        .sum::<f64>()
        / combined.len() as f64)
        .sqrt();
    Ok(Selection {
        leap: majority_leap(candidates, &truechimers),
        truechimers,
        falsetickers,
        outliers,
        peer,
        offset,
        jitter,
    })
}

/// Marzullo's algorithm as RFC 5905 gives it: the interval shared by the
/// most candidates, allowing `f` falsetickers for the smallest `f` that
/// works, as long as they are a minority.
fn intersection(candidates: &[Candidate]) -> Option<(f64, f64)> {
    let n = candidates.len();
    // Edges: (value, kind) with -1 a lower end, 0 a midpoint, +1 an upper end.
    let mut edges: Vec<(f64, i32)> = candidates
        .iter()
        .flat_map(|c| {
            [
                (c.offset - c.root_distance, -1),
                (c.offset, 0),
                (c.offset + c.root_distance, 1),
            ]
        })
        .collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut allow = 0;
    while 2 * allow < n {
        let needed = (n - allow) as i32;
        let mut found = 0;
        let mut chime = 0;
        let mut low = f64::NAN;
        for &(value, kind) in &edges {
            chime -= kind;
            if chime >= needed {
                low = value;
                break;
            }
            if kind == 0 {
                found += 1;
            }
        }
        chime = 0;
        let mut high = f64::NAN;
        for &(value, kind) in edges.iter().rev() {
            chime += kind;
            if chime >= needed {
                high = value;
                break;
            }
            if kind == 0 {
                found += 1;
            }
        }
        if found <= allow && low <= high {
            return Some((low, high));
        }
        allow += 1;
    }
    None
}

/// Survivors the clustering keeps at least (RFC 5905 NMIN).
const CLUSTER_MIN: usize = 3;

/// RFC 5905's cluster algorithm (§11.2.2): while there are more than
/// [`CLUSTER_MIN`] survivors, drop the one whose offset is furthest from the
/// others (the largest selection jitter), as long as that scatter is larger
/// than the smallest jitter of a single source. A server that stepped keeps
/// an interval wide enough to pass the intersection for a while (its jitter
/// jumps with the step); this is what keeps it out of the combination.
fn cluster(candidates: &[Candidate], truechimers: &[usize]) -> Vec<usize> {
    let mut survivors = truechimers.to_vec();
    while survivors.len() > CLUSTER_MIN {
        let selection_jitter = |i: usize| {
            let sum: f64 = survivors
                .iter()
                .map(|&j| (candidates[i].offset - candidates[j].offset).powi(2))
                .sum();
            (sum / (survivors.len() - 1) as f64).sqrt()
        };
        let (worst, worst_jitter) = survivors.iter().map(|&i| (i, selection_jitter(i))).fold(
            (usize::MAX, f64::NEG_INFINITY),
            |a, b| {
                if b.1 > a.1 { b } else { a }
            },
        );
        let least_jitter = survivors
            .iter()
            .map(|&i| candidates[i].jitter)
            .fold(f64::INFINITY, f64::min);
        if worst_jitter <= least_jitter {
            break;
        }
        survivors.retain(|&i| i != worst);
    }
    survivors
}

fn majority_leap(candidates: &[Candidate], chosen: &[usize]) -> Leap {
    let count = |leap: Leap| {
        chosen
            .iter()
            .filter(|&&i| candidates[i].leap == leap)
            .count()
    };
    [Leap::AddSecond, Leap::DelSecond]
        .into_iter()
        .find(|&l| 2 * count(l) > chosen.len())
        .unwrap_or(Leap::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(offset: f64, distance: f64) -> Candidate {
        Candidate {
            offset,
            root_distance: distance,
            jitter: 1e-5,
            stratum: 1,
            leap: Leap::None,
        }
    }

    #[test]
    fn agreeing_sources_are_combined_by_weight() {
        let s = select(&[c(0.001, 0.01), c(0.002, 0.01), c(0.0015, 0.005)], 3, None).unwrap();
        assert_eq!(s.truechimers, [0, 1, 2]);
        assert!(s.falsetickers.is_empty());
        // Weights 100, 100, 200.
        assert!((s.offset - 0.0015).abs() < 1e-12);
        assert_eq!(s.peer, 2, "shortest distance");
    }

    #[test]
    fn a_falseticker_among_four_is_excluded() {
        let cands = [
            c(0.0, 0.002),
            c(0.0005, 0.002),
            c(-0.0003, 0.002),
            c(0.100, 0.002),
        ];
        let s = select(&cands, 3, None).unwrap();
        assert_eq!(s.falsetickers, [3]);
        assert!(s.offset.abs() < 0.001);
    }

    #[test]
    fn distant_truechimers_are_not_combined() {
        // An old sample of a far-off source has a huge interval that
        // overlaps everyone: a truechimer, but it must not pull the offset.
        let cands = [
            c(0.0, 0.001),
            c(0.0001, 0.001),
            c(0.0, 0.001),
            c(0.100, 0.150),
        ];
        let s = select(&cands, 3, None).unwrap();
        assert_eq!(s.truechimers, [0, 1, 2, 3]);
        assert!(s.offset.abs() < 0.0001, "{}", s.offset);
    }

    #[test]
    fn clustering_drops_the_one_that_stepped() {
        // Its jitter jumped with the step and its interval still overlaps
        // the others' (old, wide) ones: a truechimer, but an outlier.
        let mut cands = [
            c(0.0, 0.020),
            c(0.0002, 0.020),
            c(-0.0001, 0.020),
            c(0.0001, 0.020),
            c(0.050, 0.035),
        ];
        for good in &mut cands[..4] {
            good.jitter = 3e-4;
        }
        cands[4].jitter = 0.025;
        let s = select(&cands, 3, None).unwrap();
        assert_eq!(s.truechimers.len(), 5);
        assert_eq!(s.outliers, [4]);
        assert!(s.offset.abs() < 0.0002, "{}", s.offset);
        // Never below three survivors.
        let s = select(&cands[2..], 1, None).unwrap();
        assert!(s.outliers.is_empty());
    }

    #[test]
    fn too_few_or_no_majority() {
        assert_eq!(
            select(&[c(0.0, 0.001), c(0.0001, 0.001)], 3, None),
            Err(NoSelection::TooFew {
                agreeing: 2,
                required: 3
            })
        );
        // Two camps of two: no majority.
        let split = [
            c(0.0, 0.001),
            c(0.0001, 0.001),
            c(1.0, 0.001),
            c(1.0001, 0.001),
        ];
        assert_eq!(select(&split, 1, None), Err(NoSelection::NoMajority));
        assert_eq!(select(&[], 1, None), Err(NoSelection::NoMajority));
    }

    #[test]
    fn the_previous_peer_is_kept_among_equals() {
        let cands = [c(0.0, 0.010), c(0.0, 0.009), c(0.0, 0.011)];
        assert_eq!(select(&cands, 1, None).unwrap().peer, 1);
        assert_eq!(select(&cands, 1, Some(2)).unwrap().peer, 2);
        let mut worse = cands;
        worse[2].root_distance = 0.05;
        assert_eq!(select(&worse, 1, Some(2)).unwrap().peer, 1);
    }

    #[test]
    fn leap_follows_the_majority() {
        let mut cands = [c(0.0, 0.01), c(0.0, 0.01), c(0.0, 0.01)];
        cands[0].leap = Leap::AddSecond;
        assert_eq!(select(&cands, 1, None).unwrap().leap, Leap::None);
        cands[1].leap = Leap::AddSecond;
        assert_eq!(select(&cands, 1, None).unwrap().leap, Leap::AddSecond);
    }
}
