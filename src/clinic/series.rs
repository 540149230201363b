//! Treatment series: a patient's infusions grouped into series. An infusion given more than
//! `new_series_after_days` after the one before starts a new series.

use chrono::Duration;

use super::config::SeriesRule;
use super::record::Infusion;

/// One series: indexes into the infusion list it was built from, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series<'a> {
    pub number: usize,
    pub infusions: Vec<&'a Infusion>,
}

impl<'a> Series<'a> {
    pub fn first(&self) -> &'a Infusion {
        self.infusions[0]
    }

    pub fn last(&self) -> &'a Infusion {
        self.infusions[self.infusions.len() - 1]
    }
}

/// Groups infusions (in time order) into series, numbered from 1.
pub fn group<'a>(infusions: &'a [Infusion], rule: &SeriesRule) -> Vec<Series<'a>> {
    let gap = Duration::days(rule.new_series_after_days);
    let mut all: Vec<Series<'a>> = Vec::new();
    for infusion in infusions {
        match all.last_mut() {
            Some(series) if infusion.start - series.last().start <= gap => {
                series.infusions.push(infusion)
            }
            _ => all.push(Series {
                number: all.len() + 1,
                infusions: vec![infusion],
            }),
        }
    }
    all
}
