//! The shipped `config/default.toml` is the compiled-in default and stays loadable.

#[test]
fn the_shipped_default_toml_loads_and_matches_the_built_in_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/default.toml");
    let text = std::fs::read_to_string(&path).expect("config/default.toml");
    assert_eq!(text, adapters::config::DEFAULT_TOML);
    use figment::providers::{Format, Toml};
    let s: adapters::config::Settings = figment::Figment::from(Toml::file_exact(&path))
        .extract()
        .expect("loads");
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert!(s.database.is_sqlite());
}
