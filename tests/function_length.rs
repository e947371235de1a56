//! No function outside tests is longer than 120 lines: past that a function
//! does several things, and the next change to it is a risk. Measured on
//! rustfmt's layout, from the `fn` line to its closing brace.

use std::path::Path;

const LIMIT: usize = 120;

/// `(name, lines)` of every function before the file's first test module.
fn functions(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .iter()
        .position(|l| l.trim() == "#[cfg(test)]")
        .unwrap_or(lines.len());
    let mut found = Vec::new();
    let mut i = 0;
    while i < end {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let signature = trimmed
            .split_once("fn ")
            .filter(|(before, _)| {
                before
                    .split_whitespace()
                    .all(|w| w.starts_with("pub") || matches!(w, "async" | "const" | "unsafe"))
            })
            .map(|(_, after)| after);
        if let Some(sig) = signature
            && !trimmed.ends_with(';')
        {
            let name: String = sig
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let close = format!("{indent}}}");
            let one_line = trimmed.ends_with('}');
            let last = (i + 1..end)
                .filter(|_| !one_line)
                .find(|&j| lines[j] == close || lines[j].starts_with(&format!("{close} ")))
                .unwrap_or(i);
            found.push((name, last - i + 1));
            i = last;
        }
        i += 1;
    }
    found
}

#[test]
fn no_function_outside_tests_is_longer_than_the_limit() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = testkit::rust_files(&src);
    let mut long = Vec::new();
    let mut seen = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (name, n) in functions(&text) {
            seen += 1;
            if n > LIMIT {
                long.push(format!("{}: fn {name}: {n} lines", file.display()));
            }
        }
    }
    assert!(seen > 200, "the scan found only {seen} functions");
    assert!(
        long.is_empty(),
        "longer than {LIMIT} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_scan_measures_functions() {
    let text = "fn a() {\n    x();\n}\n\npub(crate) async fn b(\n    y: u8,\n) -> u8 {\n    y\n}\nimpl X {\n    pub fn c(&self) {}\n    fn d(&self) {\n        if x {\n        }\n    }\n}\n#[cfg(test)]\nfn e() {\n}\n";
    assert_eq!(
        functions(text),
        [
            ("a".to_string(), 3),
            ("b".to_string(), 5),
            ("c".to_string(), 1),
            ("d".to_string(), 4)
        ]
    );
}
