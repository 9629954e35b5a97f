//! The rules files the project ships (the demo's `examples/rules.toml` and
//! every TOML block of docs/configuration.md): each loads, and each passes
//! the shipped JSON Schema under a real validator, which flags the mistakes
//! an editor should. Here rather than in traffik-axum, so the validator is
//! built once, not once per feature set that crate is tested with.

use traffik_axum::config::Rules;
use traffik_examples::RULES;

/// The TOML blocks of docs/configuration.md, each a whole rules file.
fn docs_files() -> Vec<&'static str> {
    let docs = include_str!("../../docs/configuration.md");
    let blocks: Vec<&str> = docs
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert!(blocks.len() >= 7, "found {} blocks", blocks.len());
    blocks
}

/// Every TOML block of docs/configuration.md is a rules file that loads:
/// the recipes cannot rot.
#[tokio::test]
async fn every_rules_file_in_the_docs_loads() {
    for block in docs_files() {
        if let Err(error) = Rules::from_toml(block, "docs/configuration.md").await {
            panic!("{error}\n{block}");
        }
    }
}

/// What an editor does with the shipped schema: every rules file the
/// project ships passes it, and it flags an unknown key and values out of
/// their sets.
#[test]
fn the_schema_passes_the_shipped_files_and_flags_mistakes() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../traffik-axum/rules.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let as_json = |text: &str| toml::from_str::<serde_json::Value>(text).unwrap();
    let demo = std::fs::read_to_string(RULES).unwrap();
    let mut files = vec![demo.as_str()];
    files.extend(docs_files());
    for text in files {
        let errors: Vec<String> = validator
            .iter_errors(&as_json(text))
            .map(|error| error.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}\n{text}");
    }
    for wrong in [
        "[throttles.api]\nrat = \"1/s\"\n",
        "[throttles.api]\nrate = \"1/s\"\nstrategy = \"token-bukket\"\n",
        "[throttles.api]\nrate = \"1/s\"\nshadow = \"lots\"\n",
        "[layer]\norder = \"random\"\n",
        "[[rules]]\nthrottle = \"api\"\nscope = \"everywhere\"\n",
        "[[rules]]\nthrottle = \"api\"\ncount = { statuses = [401], settle = \"later\" }\n",
        "version = \"one\"\n",
    ] {
        assert!(!validator.is_valid(&as_json(wrong)), "passed: {wrong}");
    }
}
