//! Text normalisation for string search: lower case, accents removed ("Zoë" -> "zoe").

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

pub fn normalize(text: &str) -> String {
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    #[test]
    fn case_and_accents_fold() {
        assert_eq!(super::normalize("Zoë Müller-ÅSTRÖM"), "zoe muller-astrom");
    }
}
