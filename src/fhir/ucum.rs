//! Just enough UCUM to compare quantities across units of one dimension: each known unit
//! maps to a factor and the canonical unit of its dimension (mg -> 0.001 g).

pub const SYSTEM: &str = "http://unitsofmeasure.org";

/// (UCUM code, factor to the canonical unit, canonical unit)
const UNITS: &[(&str, f64, &str)] = &[
    // mass
    ("kg", 1e3, "g"),
    ("g", 1.0, "g"),
    ("mg", 1e-3, "g"),
    ("ug", 1e-6, "g"),
    ("ng", 1e-9, "g"),
    ("[lb_av]", 453.592_37, "g"),
    // volume
    ("L", 1.0, "L"),
    ("dL", 1e-1, "L"),
    ("mL", 1e-3, "L"),
    ("uL", 1e-6, "L"),
    // length
    ("km", 1e3, "m"),
    ("m", 1.0, "m"),
    ("cm", 1e-2, "m"),
    ("mm", 1e-3, "m"),
    // time
    ("wk", 604_800.0, "s"),
    ("d", 86_400.0, "s"),
    ("h", 3_600.0, "s"),
    ("min", 60.0, "s"),
    ("s", 1.0, "s"),
    ("ms", 1e-3, "s"),
    // dose per body mass
    ("mg/kg", 1e-6, "g/g"),
    ("ug/kg", 1e-9, "g/g"),
    ("g/kg", 1e-3, "g/g"),
    // dose rate per body mass
    ("mg/kg/h", 1e-6 / 3_600.0, "g/g/s"),
    ("mg/kg/min", 1e-6 / 60.0, "g/g/s"),
    // rates and others that compare only with themselves
    ("mg/h", 1e-3 / 3_600.0, "g/s"),
    ("mg/min", 1e-3 / 60.0, "g/s"),
    ("mL/h", 1e-3 / 3_600.0, "L/s"),
    ("mL/min", 1e-3 / 60.0, "L/s"),
    ("/min", 1.0 / 60.0, "/s"),
    ("/s", 1.0, "/s"),
    ("mm[Hg]", 1.0, "mm[Hg]"),
    ("%", 1.0, "%"),
    ("kg/m2", 1.0, "kg/m2"),
    ("Cel", 1.0, "Cel"),
    ("{score}", 1.0, "{score}"),
];

/// The value in its dimension's canonical unit, for a UCUM code this table knows.
pub fn canonical(code: &str, value: f64) -> Option<(f64, &'static str)> {
    UNITS
        .iter()
        .find(|(unit, _, _)| *unit == code)
        .map(|(_, factor, canonical)| (value * factor, *canonical))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milligrams_and_grams_meet_in_grams() {
        let (mg, unit) = canonical("mg", 500.0).unwrap();
        let (g, same) = canonical("g", 0.5).unwrap();
        assert_eq!(unit, same);
        assert!((mg - g).abs() < 1e-12);
        assert_eq!(canonical("kg", 2.0), Some((2000.0, "g")));
        assert!(canonical("furlong", 1.0).is_none());
    }
}
