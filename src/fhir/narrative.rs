//! Narrative XHTML (`Narrative.div`) checked against invariant txt-1: only basic HTML
//! formatting elements, no scripts, event handlers or script URLs, since partners and
//! the clinic's own report render it.

/// The elements txt-1 allows (HTML 4.0 chapters 7-12 basics, links and images).
const ALLOWED_ELEMENTS: &[&str] = &[
    "a",
    "abbr",
    "acronym",
    "address",
    "b",
    "big",
    "blockquote",
    "br",
    "caption",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "kbd",
    "li",
    "ol",
    "p",
    "pre",
    "q",
    "samp",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "tt",
    "ul",
    "var",
];

/// Why `div` breaks txt-1, if it does.
pub fn check(div: &str) -> Result<(), String> {
    let trimmed = div.trim_start();
    if !trimmed.starts_with("<div") {
        return Err("Narrative.div must be a single <div> element".into());
    }
    if !trimmed.contains("http://www.w3.org/1999/xhtml") {
        return Err(
            "Narrative.div must be in the XHTML namespace (xmlns=\"http://www.w3.org/1999/xhtml\")"
                .into(),
        );
    }
    let mut rest = trimmed;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        if let Some(after) = rest.strip_prefix("!--") {
            rest = after.split_once("-->").map_or("", |(_, tail)| tail);
            continue;
        }
        let closing = rest.starts_with('/');
        let tag = rest.trim_start_matches('/');
        let name_len = tag
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == ':' || c == '-' || c == '_'))
            .unwrap_or(tag.len());
        let name = tag[..name_len].to_ascii_lowercase();
        if !ALLOWED_ELEMENTS.contains(&name.as_str()) {
            return Err(format!(
                "Narrative.div may not contain <{name}> elements (txt-1)"
            ));
        }
        let (attributes, tail) = split_tag(&tag[name_len..]);
        if !closing {
            check_attributes(&name, attributes)?;
        }
        rest = tail;
    }
    Ok(())
}

/// The attribute text of a tag and what follows its `>`, minding quoted values.
fn split_tag(text: &str) -> (&str, &str) {
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return (&text[..i], &text[i + 1..]),
            _ => {}
        }
    }
    (text, "")
}

fn check_attributes(element: &str, text: &str) -> Result<(), String> {
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if rest.is_empty() {
            return Ok(());
        }
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let mut value = "";
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            let (parsed, tail) = match after.chars().next() {
                Some(q @ ('"' | '\'')) => after[1..].split_once(q).unwrap_or((&after[1..], "")),
                _ => after.split_at(after.find(char::is_whitespace).unwrap_or(after.len())),
            };
            value = parsed;
            rest = tail;
        }
        if name.starts_with("on") {
            return Err(format!(
                "Narrative.div may not carry event handler attributes ({name} on <{element}>) (txt-1)"
            ));
        }
        let scheme = value.trim().to_ascii_lowercase();
        if ["href", "src"].contains(&name.as_str())
            && ["javascript:", "vbscript:", "data:text"]
                .iter()
                .any(|s| scheme.starts_with(s))
        {
            return Err(format!(
                "Narrative.div may not link to scripts ({name} on <{element}>) (txt-1)"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = r#"xmlns="http://www.w3.org/1999/xhtml""#;

    #[test]
    fn basic_formatting_passes() {
        let div = format!(
            r##"<div {NS}><p>Ketamine <b>35 mg</b> IV</p><!-- note --><table><tr><td colspan="2">x &gt; y</td></tr></table><a href="https://example.org/a?b=1">link</a><img src="#img" alt="chart"/><br/></div>"##
        );
        assert_eq!(check(&div), Ok(()));
    }

    #[test]
    fn scripts_handlers_and_script_urls_fail() {
        let cases = [
            (
                format!("<div {NS}><script>alert(1)</script></div>"),
                "<script>",
            ),
            (
                format!("<div {NS}><SCRIPT>alert(1)</SCRIPT></div>"),
                "<script>",
            ),
            (
                format!("<div {NS}><iframe src=\"https://x\"></iframe></div>"),
                "<iframe>",
            ),
            (
                format!("<div {NS}><p onclick=\"steal()\">x</p></div>"),
                "onclick",
            ),
            (
                format!("<div {NS}><img src=x onerror=alert(1)></div>"),
                "onerror",
            ),
            (
                format!("<div {NS}><a href=\" JavaScript:alert(1)\">x</a></div>"),
                "href on <a>",
            ),
            (
                format!("<div {NS}><p title='a>b' onmouseover='x'>x</p></div>"),
                "onmouseover",
            ),
            ("<p>no div</p>".to_string(), "single <div>"),
            ("<div>no namespace</div>".to_string(), "XHTML namespace"),
        ];
        for (div, expected) in cases {
            let error = check(&div).expect_err(&div);
            assert!(error.contains(expected), "{div}: {error}");
        }
    }
}
