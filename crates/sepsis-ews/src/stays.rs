//! A check of how long the training stays last, septic and not.
//!
//! The model's inputs include the hours in the ICU and the measurement
//! counts, which grow with them. When the records of patients without
//! sepsis all end early and many septic records go on, every late hour in
//! the training data is a septic patient's, and the model learns that a
//! long stay means sepsis. PhysioNet 2019 training set A is cut this way:
//! all but 6 of its 18,546 records of patients without sepsis last at most
//! 60 hours. At a hospital whose records are not cut so, every long stay
//! would get high scores and alerts. The check finds the pattern in any
//! training data, and the model card states it.

use crate::interval::thousands;
use crate::train::PatientSet;

/// The share of stays without sepsis that end at or before the cut hour.
const OTHER_STAYS_QUANTILE: f64 = 0.999;
/// More septic stays than this share ending after the cut make a limitation.
const SEPTIC_SHARE_PAST_CUT: f64 = 0.05;
/// Fewer stays of either kind than these give no result.
const MIN_OTHER_STAYS: usize = 100;
const MIN_SEPTIC_STAYS: usize = 20;

/// Training stays that go on past the hour by which nearly all stays without
/// sepsis have ended.
#[derive(Debug, Clone, PartialEq)]
pub struct LateSepticStays {
    /// The hour by which 99.9 % of the stays without sepsis end.
    pub cut_hour: f64,
    pub other_stays: usize,
    pub other_stays_past_cut: usize,
    pub septic_stays: usize,
    pub septic_stays_past_cut: usize,
}

impl LateSepticStays {
    /// Returns the model card's sentence about these stays.
    pub fn limitation(&self) -> String {
        format!(
            "In the training data, {within} of {others} stays without sepsis end by hour {cut}, \
             while {late} of {septic} septic stays go on past it. After hour {cut} the model \
             has seen almost only septic patients, so it scores a long stay as sepsis. At a \
             hospital where patients without sepsis stay longer, it will score and alert them \
             too high: measure the alerts per patient-day there with `sepsis evaluate --data` \
             before use.",
            within = thousands(self.other_stays - self.other_stays_past_cut),
            others = thousands(self.other_stays),
            cut = self.cut_hour,
            late = thousands(self.septic_stays_past_cut),
            septic = thousands(self.septic_stays),
        )
    }
}

/// Finds septic training stays that last past nearly every stay without
/// sepsis. A stay ends at the hour of its last row and is septic when any
/// of its rows has the outcome. Returns `None` when the two kinds of stay
/// end alike, or when either kind is too rare to tell.
pub fn late_septic_stays(sets: &[&PatientSet]) -> Option<LateSepticStays> {
    let mut other = Vec::new();
    let mut septic = Vec::new();
    for set in sets {
        for range in &set.patients {
            if range.is_empty() {
                continue;
            }
            let end = set.hours[range.end - 1];
            if set.outcome[range.clone()].iter().any(|o| *o) {
                septic.push(end);
            } else {
                other.push(end);
            }
        }
    }

    if other.len() < MIN_OTHER_STAYS || septic.len() < MIN_SEPTIC_STAYS {
        return None;
    }
    other.sort_by(f64::total_cmp);
    // Nearest rank: the smallest end that at least the quantile's share of
    // the stays reach.
    let rank = (OTHER_STAYS_QUANTILE * other.len() as f64).ceil() as usize;
    let cut_hour = other[rank.clamp(1, other.len()) - 1];
    let septic_stays_past_cut = septic.iter().filter(|end| **end > cut_hour).count();
    if (septic_stays_past_cut as f64) <= SEPTIC_SHARE_PAST_CUT * septic.len() as f64 {
        return None;
    }
    Some(LateSepticStays {
        cut_hour,
        other_stays: other.len(),
        other_stays_past_cut: other.iter().filter(|end| **end > cut_hour).count(),
        septic_stays: septic.len(),
        septic_stays_past_cut,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds stays of the given lengths in hours, from hour 1. A septic
    /// stay has the outcome in its last row.
    fn stays(lengths: &[(usize, bool)]) -> PatientSet {
        let mut set = PatientSet::default();
        for (length, is_septic) in lengths {
            let start = set.hours.len();
            for hour in 1..=*length {
                set.hours.push(hour as f64);
                set.outcome.push(*is_septic && hour == *length);
            }
            set.patients.push(start..start + length);
        }
        set
    }

    fn lengths(count: usize, septic: bool, length: impl Fn(usize) -> usize) -> Vec<(usize, bool)> {
        (0..count).map(|i| (length(i), septic)).collect()
    }

    #[test]
    fn septic_stays_past_the_others_are_found() {
        // 1,000 stays without sepsis of 8 to 59 hours, 100 septic stays of
        // which 40 last 61 to 178 hours.
        let mut all = lengths(1000, false, |i| 8 + i % 52);
        all.extend(lengths(60, true, |i| 8 + i % 50));
        all.extend(lengths(40, true, |i| 61 + 3 * i));
        let found = late_septic_stays(&[&stays(&all)]).expect("a limitation");
        assert_eq!(found.cut_hour, 59.0);
        assert_eq!(found.other_stays, 1000);
        assert_eq!(found.other_stays_past_cut, 0);
        assert_eq!(found.septic_stays, 100);
        assert_eq!(found.septic_stays_past_cut, 40);
        let sentence = found.limitation();
        assert!(sentence.contains("1,000 of 1,000 stays without sepsis end by hour 59"));
        assert!(sentence.contains("40 of 100 septic stays"));
    }

    #[test]
    fn stays_split_over_sets_are_counted_together() {
        let others = stays(&lengths(1000, false, |i| 8 + i % 52));
        let septic = stays(&lengths(40, true, |i| 61 + i));
        let found = late_septic_stays(&[&others, &septic]).expect("a limitation");
        assert_eq!((found.other_stays, found.septic_stays), (1000, 40));
    }

    #[test]
    fn stays_that_end_alike_give_none() {
        // Septic stays are longer, but other stays reach as far.
        let mut all = lengths(1000, false, |i| 8 + (i * 7) % 300);
        all.extend(lengths(100, true, |i| 20 + (i * 11) % 280));
        assert_eq!(late_septic_stays(&[&stays(&all)]), None);
    }

    #[test]
    fn cut_ignores_one_long_other_stay() {
        // The cut is a quantile, so a few long stays without sepsis do not
        // move it past the septic ones.
        let mut all = lengths(1000, false, |i| 8 + i % 52);
        all.push((500, false));
        all.extend(lengths(40, true, |i| 61 + i));
        let found = late_septic_stays(&[&stays(&all)]).expect("a limitation");
        assert_eq!(found.cut_hour, 59.0);
        assert_eq!(found.other_stays_past_cut, 1);
    }

    #[test]
    fn late_septic_stays_within_the_allowance_give_none() {
        // 5 % of the septic stays past the cut is within the allowance.
        let mut all = lengths(1000, false, |i| 8 + i % 52);
        all.extend(lengths(95, true, |i| 8 + i % 50));
        all.extend(lengths(5, true, |i| 61 + i));
        assert_eq!(late_septic_stays(&[&stays(&all)]), None);
    }

    #[test]
    fn too_few_stays_give_none() {
        let mut all = lengths(99, false, |i| 8 + i % 52);
        all.extend(lengths(40, true, |i| 61 + i));
        assert_eq!(late_septic_stays(&[&stays(&all)]), None);
        let mut all = lengths(1000, false, |i| 8 + i % 52);
        all.extend(lengths(19, true, |i| 61 + i));
        assert_eq!(late_septic_stays(&[&stays(&all)]), None);
        assert_eq!(late_septic_stays(&[]), None);
    }
}
