//! The platform templates (`platforms/<name>/*.j2`), compiled into the binary so `molten` is
//! self-contained, rendered with minijinja in strict mode: a variable the code forgot to pass is
//! an error, never an empty string in a Terraform file.

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use super::ComposeError;

/// `(name, source)` of every template.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "packet/main.tf.json",
        include_str!("../../../platforms/packet/main.tf.json.j2"),
    ),
    (
        "packet/README.md",
        include_str!("../../../platforms/packet/README.md.j2"),
    ),
    (
        "vagrant/Vagrantfile",
        include_str!("../../../platforms/vagrant/Vagrantfile.j2"),
    ),
    (
        "ipxe/boot.ipxe",
        include_str!("../../../platforms/ipxe/boot.ipxe.j2"),
    ),
    (
        "ipxe/node.ipxe",
        include_str!("../../../platforms/ipxe/node.ipxe.j2"),
    ),
];

/// Names of every embedded template.
pub fn template_names() -> impl Iterator<Item = &'static str> {
    TEMPLATES.iter().map(|(name, _)| *name)
}

/// Parsed once per process: composing a large cluster renders a template per node.
fn environment() -> &'static Environment<'static> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(build_environment)
}

fn build_environment() -> Environment<'static> {
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
    for (name, source) in TEMPLATES {
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

/// Renders the template `name` with `context`.
pub fn render(name: &str, context: Value) -> Result<String, ComposeError> {
    let env = environment();
    let wrap = |source| ComposeError::Template {
        name: name.to_string(),
        source,
    };
    env.get_template(name)
        .map_err(wrap)?
        .render(context)
        .map_err(wrap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn every_template_parses() {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }

    #[test]
    fn json_refuses_missing_values() {
        let mut env = build_environment();
        env.add_template("t", "{{ x | json }}").unwrap();
        let t = env.get_template("t").unwrap();
        assert_eq!(t.render(context! { x => "a\"b" }).unwrap(), r#""a\"b""#);
        assert!(t.render(context! {}).is_err());
        assert!(t.render(context! { x => () }).is_err());
    }

    #[test]
    fn a_missing_variable_is_an_error() {
        let err = render("ipxe/boot.ipxe", context! {}).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("template ipxe/boot.ipxe: "), "{text}");
        assert!(text.contains("undefined"), "{text}");
    }
}
