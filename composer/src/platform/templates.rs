//! Rendering a platform's templates (`platforms/<name>/*.j2`, compiled into the binary so
//! `molten` is self-contained) with minijinja in strict mode: a variable the code forgot to pass
//! is an error, never an empty string in a Terraform file. Each platform owns its
//! [`TemplateSet`], so adding one touches no list here.

use std::sync::OnceLock;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use crate::error::ComposeError;

/// A platform's templates, `(name, source)`, parsed once per process on first use (composing a
/// large cluster renders a template per node).
pub struct TemplateSet {
    sources: &'static [(&'static str, &'static str)],
    environment: OnceLock<Environment<'static>>,
}

impl TemplateSet {
    pub const fn new(sources: &'static [(&'static str, &'static str)]) -> Self {
        Self {
            sources,
            environment: OnceLock::new(),
        }
    }

    /// Names of the templates in this set.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        self.sources.iter().map(|(name, _)| *name)
    }

    /// Parses every template of the set afresh, naming the first that does not parse.
    pub fn parse_all(&self) -> Result<(), String> {
        let mut env = base_environment();
        for (name, source) in self.sources {
            env.add_template(name, source)
                .map_err(|e| format!("{name}: {e:#}"))?;
        }
        Ok(())
    }

    /// Renders the template `name` with `context`.
    pub fn render(&self, name: &str, context: Value) -> Result<String, ComposeError> {
        let env = self
            .environment
            .get_or_init(|| build_environment(self.sources));
        let wrap = |source| ComposeError::Template {
            name: name.to_string(),
            source,
        };
        env.get_template(name)
            .map_err(wrap)?
            .render(context)
            .map_err(wrap)
    }
}

fn base_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // No escaping by file name (`.json` would quote every value): templates say `tojson`
    // wherever a value lands inside JSON or Ruby.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.add_filter("json", json_filter);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("default delimiters are valid"),
    );
    env
}

fn build_environment(sources: &'static [(&'static str, &'static str)]) -> Environment<'static> {
    let mut env = base_environment();
    for (name, source) in sources {
        env.add_template(name, source)
            .expect("embedded templates parse (checked by a unit test)");
    }
    env
}

/// `value | json`: a JSON literal (also a valid Ruby literal for strings and numbers). Unlike
/// minijinja's `tojson`, an undefined or none value is an error, not `null`.
fn json_filter(value: Value) -> Result<String, minijinja::Error> {
    if value.is_undefined() || value.is_none() {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::UndefinedError,
            "`json` got no value",
        ));
    }
    serde_json::to_string(&value)
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    static SET: TemplateSet = TemplateSet::new(&[("t/boot", "{{ cluster }}\n")]);

    #[test]
    fn json_refuses_missing_values() {
        let mut env = base_environment();
        env.add_template("t", "{{ x | json }}").unwrap();
        let t = env.get_template("t").unwrap();
        assert_eq!(t.render(context! { x => "a\"b" }).unwrap(), r#""a\"b""#);
        assert!(t.render(context! {}).is_err());
        assert!(t.render(context! { x => () }).is_err());
    }

    #[test]
    fn a_missing_variable_is_an_error() {
        assert_eq!(SET.names().collect::<Vec<_>>(), ["t/boot"]);
        assert_eq!(
            SET.render("t/boot", context! { cluster => "c" }).unwrap(),
            "c\n"
        );
        let err = SET.render("t/boot", context! {}).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("template t/boot: "), "{text}");
        assert!(text.contains("undefined"), "{text}");
    }
}
