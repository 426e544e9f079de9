//! Every code block of `docs/embedding.md` is real code: each one must appear word for
//! word in the example's files (or the greeter plugin's), so the guide cannot drift
//! from the program it describes. `text` blocks (shell commands) are not checked.

const GUIDE: &str = include_str!("../../../docs/embedding.md");

const SOURCES: &[(&str, &str)] = &[
    (
        "examples/plugin-host/Cargo.toml",
        include_str!("../Cargo.toml"),
    ),
    (
        "examples/plugin-host/wit/plugin.wit",
        include_str!("../wit/plugin.wit"),
    ),
    (
        "examples/plugin-host/src/lib.rs",
        include_str!("../src/lib.rs"),
    ),
    (
        "examples/plugin-host/src/main.rs",
        include_str!("../src/main.rs"),
    ),
    (
        "components/plugin-greeter/src/lib.rs",
        include_str!("../../../components/plugin-greeter/src/lib.rs"),
    ),
];

/// The guide's fenced blocks as (language, body).
fn blocks(text: &str) -> Vec<(&str, String)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```") {
            let mut body = String::new();
            for line in lines.by_ref() {
                if line.starts_with("```") {
                    break;
                }
                body.push_str(line);
                body.push('\n');
            }
            blocks.push((lang, body));
        }
    }
    blocks
}

#[test]
fn every_code_block_of_the_guide_is_in_the_example() {
    let blocks = blocks(GUIDE);
    let checked: Vec<_> = blocks.iter().filter(|(lang, _)| *lang != "text").collect();
    assert!(checked.len() >= 10, "the guide has its code blocks");
    for (lang, body) in checked {
        assert!(
            ["rust", "wit", "toml"].contains(lang),
            "a code block of unknown language {lang:?}"
        );
        assert!(
            SOURCES
                .iter()
                .any(|(_, source)| source.contains(body.as_str())),
            "this {lang} block of docs/embedding.md is not in any of {:?}:\n{body}",
            SOURCES.iter().map(|(path, _)| path).collect::<Vec<_>>()
        );
    }
}
