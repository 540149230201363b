//! How ketamine infusions are billed on a professional claim: the CPT administration codes
//! an infusion's length calls for, and the HCPCS drug line (J3490, unclassified drug), which
//! payers accept only with the NDC of the product given; the `Claim.item`s they make.

use serde_json::{Value, json};

use super::codes;
use super::config::KetamineCodes;
use super::outcomes::rounded;
use super::record::Infusion;

/// The administration codes of one infusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdministrationCodes {
    /// 96365 (initial infusion, up to one hour), or 96374 (IV push) for 15 minutes or less.
    pub initial: &'static str,
    /// Units of 96366 (each additional hour).
    pub additional_hours: u32,
}

/// CPT's time rules for IV infusions (96360-96379): an infusion of 15 minutes or less is
/// reported as a push (96374); 96365 covers the first hour; one unit of 96366 is reported
/// for each further full hour and for a last part-hour of more than 30 minutes (91-150
/// minutes in all give one unit, 151-210 two). An infusion still running (no end) gets
/// 96365 alone, since the additional time cannot be counted yet.
pub fn administration_codes(minutes: Option<f64>) -> AdministrationCodes {
    let first_hour = |additional_hours| AdministrationCodes {
        initial: codes::CPT_INFUSION_FIRST_HOUR,
        additional_hours,
    };
    let Some(minutes) = minutes else {
        return first_hour(0);
    };
    if minutes <= 15.0 {
        return AdministrationCodes {
            initial: codes::CPT_IV_PUSH,
            additional_hours: 0,
        };
    }
    let beyond_first_hour = (minutes - 60.0).max(0.0);
    let full_hours = (beyond_first_hour / 60.0).floor();
    let last_part = beyond_first_hour - full_hours * 60.0;
    first_hour(full_hours as u32 + u32::from(last_part > 30.0))
}

/// One `Claim.item`.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub system: &'static str,
    pub code: &'static str,
    pub display: &'static str,
    pub quantity: u32,
    pub placement: Placement,
    /// The NDC line of a drug item.
    pub detail: Option<Value>,
}

/// When a line's service takes place and what it points at.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// `("servicedDate", "2026-03-02")` or `("servicedPeriod", {start, end})`.
    pub serviced: (&'static str, Value),
    /// 1-based positions in `Claim.diagnosis`.
    pub diagnoses: Vec<usize>,
    /// 1-based positions in `Claim.supportingInfo`.
    pub information: Vec<usize>,
}

/// The product of a drug line: its NDC and, when known, the amount given.
#[derive(Debug, Clone, PartialEq)]
pub struct Drug {
    pub ndc: String,
    pub quantity: Option<Value>,
}

/// The administration lines of `count` infusions of one length, and with a `drug` its line:
/// J3490 with the NDC in `detail`.
pub fn infusion_lines(
    administration: AdministrationCodes,
    count: u32,
    drug: Option<Drug>,
    placement: &Placement,
) -> Vec<Line> {
    let line = |system, code, display, quantity| Line {
        system,
        code,
        display,
        quantity,
        placement: placement.clone(),
        detail: None,
    };
    let initial_display = if administration.initial == codes::CPT_IV_PUSH {
        "IV push, single or initial substance"
    } else {
        "IV infusion for therapy, initial, up to 1 hour"
    };
    let mut lines = vec![line(
        codes::CPT,
        administration.initial,
        initial_display,
        count,
    )];
    if administration.additional_hours > 0 {
        lines.push(line(
            codes::CPT,
            codes::CPT_INFUSION_ADDITIONAL_HOUR,
            "IV infusion for therapy, each additional hour",
            count * administration.additional_hours,
        ));
    }
    if let Some(drug) = drug {
        let mut detail = json!({
            "sequence": 1,
            "productOrService": {"coding": [{"system": codes::NDC, "code": drug.ndc}], "text": "ketamine"}
        });
        if let Some(quantity) = drug.quantity {
            detail["quantity"] = quantity;
        }
        lines.push(Line {
            detail: Some(json!([detail])),
            ..line(
                codes::HCPCS,
                codes::HCPCS_UNCLASSIFIED_DRUG,
                "Unclassified drugs (ketamine)",
                count,
            )
        });
    }
    lines
}

/// The amount an infusion gave, for its NDC line: mL of the product when its concentration
/// is known, else mg.
pub fn drug_quantity(infusion: &Infusion, weight_kg: Option<f64>) -> Option<Value> {
    let mg = infusion.milligrams(weight_kg)?;
    Some(match infusion.concentration_mg_per_ml {
        Some(mg_per_ml) if mg_per_ml > 0.0 => ucum(rounded(mg / mg_per_ml, 2), "mL"),
        _ => ucum(rounded(mg, 1), "mg"),
    })
}

fn ucum(value: f64, unit: &str) -> Value {
    json!({"value": value, "unit": unit, "system": codes::UCUM, "code": unit})
}

impl Line {
    /// The `Claim.item` at position `sequence`.
    pub fn to_item(&self, sequence: usize) -> Value {
        let placement = &self.placement;
        let mut item = json!({"sequence": sequence});
        if !placement.diagnoses.is_empty() {
            item["diagnosisSequence"] = json!(placement.diagnoses);
        }
        if !placement.information.is_empty() {
            item["informationSequence"] = json!(placement.information);
        }
        item["productOrService"] = json!({"coding": [{"system": self.system, "code": self.code, "display": self.display}]});
        item[placement.serviced.0] = placement.serviced.1.clone();
        item["quantity"] = json!({"value": self.quantity});
        if let Some(detail) = &self.detail {
            item["detail"] = detail.clone();
        }
        item
    }
}

/// The NDC of a medication: an NDC coding of the concept itself, or else the NDC configured
/// for the ketamine product it names.
pub fn ndc_of(concept: &Value, ketamine: &KetamineCodes) -> Option<String> {
    if let Some((_, ndc)) = codes::codings(concept).find(|(system, _)| *system == codes::NDC) {
        return Some(ndc.to_string());
    }
    codes::codings(concept)
        .filter(|(system, _)| *system == ketamine.system)
        .find_map(|(_, code)| {
            ketamine
                .products
                .iter()
                .find(|product| product.code == code)?
                .ndc
                .clone()
        })
}

/// Is `text` an NDC as claims carry it: 10 digits in one of the three hyphenated layouts
/// (4-4-2, 5-3-2, 5-4-1), or 11 digits (5-4-2, hyphenated or not)?
pub fn is_ndc(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    let all_digits = groups
        .iter()
        .all(|g| !g.is_empty() && g.chars().all(|c| c.is_ascii_digit()));
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    all_digits
        && matches!(
            lengths.as_slice(),
            [11] | [4, 4, 2] | [5, 3, 2] | [5, 4, 1] | [5, 4, 2]
        )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::clinic::config::ClinicConfig;

    fn lines(minutes: f64) -> (&'static str, u32) {
        let codes = administration_codes(Some(minutes));
        (codes.initial, codes.additional_hours)
    }

    #[test]
    fn the_first_hour_is_96365_and_96366_counts_each_further_hour_past_30_minutes() {
        assert_eq!(lines(40.0), ("96365", 0));
        assert_eq!(lines(60.0), ("96365", 0));
        assert_eq!(lines(61.0), ("96365", 0));
        assert_eq!(lines(90.0), ("96365", 0));
        assert_eq!(lines(91.0), ("96365", 1));
        assert_eq!(lines(120.0), ("96365", 1));
        assert_eq!(lines(150.0), ("96365", 1));
        assert_eq!(lines(151.0), ("96365", 2));
        assert_eq!(lines(210.0), ("96365", 2));
        assert_eq!(lines(211.0), ("96365", 3));
    }

    #[test]
    fn fifteen_minutes_or_less_is_a_push_and_a_running_infusion_bills_the_first_hour() {
        assert_eq!(lines(15.0), ("96374", 0));
        assert_eq!(lines(16.0), ("96365", 0));
        assert_eq!(
            administration_codes(None),
            AdministrationCodes {
                initial: "96365",
                additional_hours: 0
            }
        );
    }

    #[test]
    fn the_ndc_comes_from_the_medication_or_the_configured_product() {
        let mut config = ClinicConfig::default();
        config.ketamine.products[0].ndc = Some("99999-0100-10".into());
        let rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm";
        let product = json!({"coding": [{"system": rxnorm, "code": "238083"}]});
        assert_eq!(
            ndc_of(&product, &config.ketamine).as_deref(),
            Some("99999-0100-10")
        );
        let coded = json!({"coding": [
            {"system": rxnorm, "code": "238083"},
            {"system": "http://hl7.org/fhir/sid/ndc", "code": "99999-0200-01"}
        ]});
        assert_eq!(
            ndc_of(&coded, &config.ketamine).as_deref(),
            Some("99999-0200-01")
        );
        let ingredient = json!({"coding": [{"system": rxnorm, "code": "6130"}]});
        assert_eq!(ndc_of(&ingredient, &config.ketamine), None);
        assert_eq!(ndc_of(&product, &ClinicConfig::default().ketamine), None);
    }

    #[test]
    fn ndc_layouts() {
        for good in [
            "9999-0100-10",
            "99999-100-10",
            "99999-0100-1",
            "99999-0100-10",
            "99999010010",
        ] {
            assert!(is_ndc(good), "{good}");
        }
        for bad in [
            "",
            "99999-0100",
            "9999901001",
            "99999-0100-1x",
            "99999--0100-10",
            "123-4567-89",
        ] {
            assert!(!is_ndc(bad), "{bad}");
        }
    }
}
