//! The shipped Markdown renders as written: every code fence closes. A fence
//! that closes with text after it ("``` With ...") is not a closing fence, so
//! everything after it renders as code (the README once lost a whole section).

use std::path::{Path, PathBuf};

fn markdown_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "mixin", "deploy"] {
        let mut stack = vec![root.join(dir)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "md") {
                    files.push(path);
                }
            }
        }
    }
    files
}

/// The 1-based line of every problem: a closing fence with text after it, or a
/// fence still open at the end of the file.
fn fence_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut open: Option<(usize, &str)> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = if trimmed.starts_with("```") {
            "```"
        } else if trimmed.starts_with("~~~") {
            "~~~"
        } else {
            continue;
        };
        match open {
            None => open = Some((index + 1, marker)),
            Some((_, opened)) if opened == marker => {
                let rest = trimmed.trim_start_matches(marker.chars().next().unwrap());
                if rest.trim().is_empty() {
                    open = None;
                } else {
                    problems.push(format!(
                        "line {}: a closing fence cannot carry text: {line:?}",
                        index + 1
                    ));
                }
            }
            Some(_) => {}
        }
    }
    if let Some((line, _)) = open {
        problems.push(format!("line {line}: this code fence never closes"));
    }
    problems
}

#[test]
fn every_code_fence_in_the_shipped_markdown_closes() {
    let files = markdown_files();
    assert!(files.len() >= 4, "found only {files:?}");
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for problem in fence_problems(&text) {
            problems.push(format!("{}: {problem}", file.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_fence_closed_with_text_after_it_is_reported() {
    let broken = "text\n```yaml\na: 1\n``` With more\nprose\n";
    let problems = fence_problems(broken);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("line 4:"), "{problems:?}");
    assert!(problems[1].starts_with("line 2:"), "{problems:?}");
    assert!(fence_problems("```sh\nx\n```\n").is_empty());
}
