//! README.md's library side-by-side quotes two programs that the suite compiles
//! (crates/client/examples/readme.rs and crates/bench/examples/readme_lettre.rs): the code
//! shown must be theirs, line for line, so the README cannot drift from code that builds.

use postline_testkit::repo_root;

/// The lines between `// README-START` and `// README-END`, one indent level removed.
fn snippet(path: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    let body = text
        .split_once("// README-START\n")
        .and_then(|(_, rest)| rest.split_once("    // README-END"))
        .unwrap_or_else(|| panic!("{path}: no README-START / README-END markers"))
        .0;
    body.lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_shows_the_compiled_programs() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for path in [
        "crates/client/examples/readme.rs",
        "crates/bench/examples/readme_lettre.rs",
    ] {
        let code = snippet(path);
        assert!(
            readme.contains(&format!("```rust\n{code}\n```")),
            "README.md does not show {path} as it is:\n{code}"
        );
    }
    let postline = snippet("crates/client/examples/readme.rs").lines().count();
    let lettre = snippet("crates/bench/examples/readme_lettre.rs")
        .lines()
        .count();
    assert!(
        postline <= lettre,
        "postline's program ({postline} lines) is longer than lettre's ({lettre})"
    );
}
