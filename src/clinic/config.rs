//! The clinic's configuration file: safety thresholds, series and discharge rules, and the
//! medication codes that count as ketamine. Every value has a default (docs/CLINIC.md says why);
//! `config/clinic.toml` lists them all.

use std::path::Path;

use serde::Deserialize;

/// Everything the clinic decides for itself. Unknown keys are refused, so a typo in the file
/// fails at start-up instead of silently keeping a default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClinicConfig {
    pub ketamine: KetamineCodes,
    pub weight: WeightRule,
    pub dose: DoseRule,
    pub pre_infusion: PreInfusionRule,
    pub series: SeriesRule,
    pub cumulative: CumulativeRule,
    pub discharge: DischargeRule,
    pub contraindications: ContraindicationRule,
    pub opioids: OpioidCodes,
}

impl ClinicConfig {
    /// Reads the file, or the defaults when no file is configured.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the clinic configuration {path:?}: {e}"))?;
        let config: Self = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("the clinic configuration {path:?} is invalid: {e}"))?;
        config.check()?;
        Ok(config)
    }

    /// Ranges must be ranges.
    fn check(&self) -> anyhow::Result<()> {
        let ranges = [
            (
                "dose.min_mg_per_kg/max_mg_per_kg",
                self.dose.min_mg_per_kg,
                self.dose.max_mg_per_kg,
            ),
            (
                "dose.min_rate/max_rate",
                self.dose.min_rate_mg_per_kg_per_hour,
                self.dose.max_rate_mg_per_kg_per_hour,
            ),
            (
                "dose.min_minutes/max_minutes",
                self.dose.min_minutes,
                self.dose.max_minutes,
            ),
            (
                "pre_infusion.min/max_heart_rate",
                self.pre_infusion.min_heart_rate,
                self.pre_infusion.max_heart_rate,
            ),
        ];
        for (name, low, high) in ranges {
            if low > high || low.is_nan() || high.is_nan() {
                anyhow::bail!("clinic configuration: {name} is not a range ({low} > {high})");
            }
        }
        Ok(())
    }
}

/// Which medications are ketamine: the RxNorm ingredient and product codes mapped to it,
/// with each product's concentration so a rate in mL/h can be turned into mg/h.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KetamineCodes {
    pub system: String,
    pub ingredient: String,
    pub products: Vec<KetamineProduct>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KetamineProduct {
    pub code: String,
    /// mg of ketamine per mL, when the product is a solution.
    pub mg_per_ml: Option<f64>,
    /// The National Drug Code of the package the clinic stocks, for the drug line of a
    /// prior-authorization Claim when the administration's medication names no NDC itself.
    #[serde(default)]
    pub ndc: Option<String>,
}

impl Default for KetamineCodes {
    fn default() -> Self {
        KetamineCodes {
            system: "http://www.nlm.nih.gov/research/umls/rxnorm".into(),
            ingredient: "6130".into(),
            products: vec![
                KetamineProduct {
                    code: "238083".into(),
                    mg_per_ml: Some(100.0),
                    ndc: None,
                },
                KetamineProduct {
                    code: "238082".into(),
                    mg_per_ml: Some(50.0),
                    ndc: None,
                },
                KetamineProduct {
                    code: "238084".into(),
                    mg_per_ml: Some(10.0),
                    ndc: None,
                },
            ],
        }
    }
}

/// Rule 1: a recent body weight.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeightRule {
    pub max_age_days: i64,
}

impl Default for WeightRule {
    fn default() -> Self {
        WeightRule { max_age_days: 30 }
    }
}

/// Rules 1 and 2: dose per kg, rate per kg and hour, infusion length.
/// 0.5 mg/kg over 40-120 minutes is 0.25-0.75 mg/kg/h.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DoseRule {
    pub min_mg_per_kg: f64,
    pub max_mg_per_kg: f64,
    pub min_rate_mg_per_kg_per_hour: f64,
    pub max_rate_mg_per_kg_per_hour: f64,
    pub min_minutes: f64,
    pub max_minutes: f64,
}

impl Default for DoseRule {
    fn default() -> Self {
        DoseRule {
            min_mg_per_kg: 0.1,
            max_mg_per_kg: 1.0,
            min_rate_mg_per_kg_per_hour: 0.25,
            max_rate_mg_per_kg_per_hour: 0.75,
            min_minutes: 40.0,
            max_minutes: 120.0,
        }
    }
}

/// Rules 3 and 4 before the infusion: vitals recorded within `max_age_hours` of the start,
/// blood pressure below the hold limit, heart rate within range, SpO2 at or above the floor.
/// During the infusion, blood pressure at or above the escalation limit is reported.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreInfusionRule {
    pub max_age_hours: f64,
    pub hold_systolic: f64,
    pub hold_diastolic: f64,
    pub escalate_systolic: f64,
    pub escalate_diastolic: f64,
    pub min_heart_rate: f64,
    pub max_heart_rate: f64,
    pub min_spo2: f64,
}

impl Default for PreInfusionRule {
    fn default() -> Self {
        PreInfusionRule {
            max_age_hours: 2.0,
            hold_systolic: 160.0,
            hold_diastolic: 100.0,
            escalate_systolic: 180.0,
            escalate_diastolic: 110.0,
            min_heart_rate: 50.0,
            max_heart_rate: 120.0,
            min_spo2: 92.0,
        }
    }
}

/// Rule 6 and the treatment plan: an infusion more than `new_series_after_days` after the
/// previous one starts a new series; a series is `target_infusions` long, at most
/// `max_infusions` and `max_weeks`; re-treatment falls due `retreatment_after_days` after
/// a series ends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeriesRule {
    pub min_interval_hours: f64,
    pub new_series_after_days: i64,
    pub target_infusions: usize,
    pub max_infusions: usize,
    pub max_weeks: i64,
    pub max_days_between_in_series: i64,
    pub retreatment_after_days: (i64, i64),
}

impl Default for SeriesRule {
    fn default() -> Self {
        SeriesRule {
            min_interval_hours: 24.0,
            new_series_after_days: 14,
            target_infusions: 6,
            max_infusions: 6,
            max_weeks: 6,
            max_days_between_in_series: 7,
            retreatment_after_days: (28, 42),
        }
    }
}

/// Rule 7: cumulative dose per series and per rolling 7 days.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CumulativeRule {
    pub max_mg_per_kg_per_series: f64,
    pub max_mg_per_kg_per_7_days: f64,
}

impl Default for CumulativeRule {
    fn default() -> Self {
        CumulativeRule {
            max_mg_per_kg_per_series: 6.0,
            max_mg_per_kg_per_7_days: 4.0,
        }
    }
}

/// Rule 5: discharge.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DischargeRule {
    pub min_minutes_after_end: i64,
}

impl Default for DischargeRule {
    fn default() -> Self {
        DischargeRule {
            min_minutes_after_end: 30,
        }
    }
}

/// Screening: active Conditions with these ICD-10-CM codes (a code or a prefix ending in
/// `*`), or carrying the clinic's contraindication flag, block an infusion.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContraindicationRule {
    pub icd10_codes: Vec<String>,
}

impl Default for ContraindicationRule {
    fn default() -> Self {
        let codes = [
            // Hypertensive crisis (uncontrolled hypertension)
            "I16*", // Schizophrenia and other psychotic disorders
            "F20*", "F22*", "F23*", "F25*", "F28", "F29",
            // Unstable angina, acute myocardial infarction, heart failure
            "I20.0", "I21*", "I50*", // Hepatic failure
            "K72*", // Raised intracranial pressure, glaucoma
            "G93.2", "G93.6", "H40.2*",
            // Active substance dependence (alcohol, opioids, cannabis, sedatives, cocaine,
            // other stimulants, hallucinogens)
            "F10.2*", "F11.2*", "F12.2*", "F13.2*", "F14.2*", "F15.2*", "F16.2*",
            // Pregnancy
            "Z33.1", "O09*",
        ];
        ContraindicationRule {
            icd10_codes: codes.iter().map(|c| c.to_string()).collect(),
        }
    }
}

/// Which medications are opioids, for the opioid use a prior-authorization package reports:
/// a MedicationRequest whose medication (or a referenced Medication's ingredient) has one of
/// these codes. The defaults are the RxNorm ingredients of the CDC's morphine-equivalent
/// table; a clinic that codes products adds their codes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpioidCodes {
    pub system: String,
    pub codes: Vec<String>,
}

impl Default for OpioidCodes {
    fn default() -> Self {
        let codes = [
            "2670",   // codeine
            "4337",   // fentanyl
            "5489",   // hydrocodone
            "3423",   // hydromorphone
            "6813",   // methadone
            "7052",   // morphine
            "7804",   // oxycodone
            "7814",   // oxymorphone
            "787390", // tapentadol
            "10689",  // tramadol
        ];
        OpioidCodes {
            system: "http://www.nlm.nih.gov/research/umls/rxnorm".into(),
            codes: codes.iter().map(|c| c.to_string()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_file_lists_exactly_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/clinic.toml");
        assert_eq!(
            ClinicConfig::load(Some(&path)).unwrap(),
            ClinicConfig::default()
        );
    }

    #[test]
    fn unknown_keys_and_inverted_ranges_are_refused() {
        let typo: Result<ClinicConfig, _> = toml::from_str("[dose]\nmax_mg_per_kilo = 2.0");
        assert!(typo.unwrap_err().to_string().contains("max_mg_per_kilo"));
        let partial: ClinicConfig = toml::from_str("[dose]\nmax_mg_per_kg = 1.5").unwrap();
        assert_eq!(partial.dose.max_mg_per_kg, 1.5);
        assert_eq!(partial.dose.min_mg_per_kg, 0.1);
        let inverted = ClinicConfig {
            dose: DoseRule {
                min_mg_per_kg: 2.0,
                ..DoseRule::default()
            },
            ..ClinicConfig::default()
        };
        assert!(
            inverted
                .check()
                .unwrap_err()
                .to_string()
                .contains("dose.min_mg_per_kg")
        );
    }
}
