//! The `molten` command line: every clap type lives here; `main.rs` only parses and dispatches.
//! Exit codes: 0 success, 2 invalid input (profile errors, a platform the profile cannot
//! serve), 1 any other failure.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::compose::compose;
use crate::diagnostics::{Diagnostic, Diagnostics, Severity};
use crate::error::ComposeError;
use crate::output::{write_bundle, Summary};
use crate::platform::Platform;
use crate::profile::{self, LoadOptions, Loaded};

const DEFAULT_PROFILE: &str = "profiles/dev.yaml";

// Each subcommand's help shows its own examples; `molten --help` shows them all. Macros, not
// consts, so `concat!` can build every page from the same lines.
macro_rules! compose_examples {
    () => {
        "  molten compose --platform vagrant --agent target/release/mc
  molten compose --platform ipxe --profile profiles/rack.yaml --agent ./mc
  molten compose --platform packet --profile site.yaml  (agent.url in site.yaml)"
    };
}

macro_rules! validate_examples {
    () => {
        "  molten validate --profile profiles/dev.yaml
  molten validate --profile profiles/packet.yaml --platform packet --strict"
    };
}

macro_rules! schema_examples {
    () => {
        "  molten schema > profile.schema.json"
    };
}

macro_rules! serve_examples {
    () => {
        "  molten serve out/ipxe --listen 0.0.0.0:8080
  molten serve out/ipxe --listen 10.0.0.1:8080 --authority profiles/rack.authority \\
      --tls-listen 10.0.0.1:8443"
    };
}

macro_rules! authority_examples {
    () => {
        "  molten authority init --profile profiles/dev.yaml
  molten authority issue-client --name bosh --etcd-root"
    };
}

macro_rules! completions_examples {
    () => {
        "  molten completions bash > /etc/bash_completion.d/molten
  molten completions zsh > \"${fpath[1]}/_molten\""
    };
}

macro_rules! help_page {
    ($($examples:expr),+) => {
        concat!(
            "Examples:\n",
            $($examples, "\n",)+
            "\nExit status: 0 success, 2 invalid input, 1 other failure."
        )
    };
}

const EXAMPLES: &str = help_page!(
    compose_examples!(),
    validate_examples!(),
    schema_examples!(),
    serve_examples!(),
    authority_examples!(),
    completions_examples!()
);
const COMPOSE_EXAMPLES: &str = help_page!(compose_examples!());
const VALIDATE_EXAMPLES: &str = help_page!(validate_examples!());
const SCHEMA_EXAMPLES: &str = help_page!(schema_examples!());
const SERVE_EXAMPLES: &str = help_page!(serve_examples!());
const AUTHORITY_EXAMPLES: &str = help_page!(authority_examples!());
const COMPLETIONS_EXAMPLES: &str = help_page!(completions_examples!());

/// `molten --version`: the crate version and the git commit it was built from (build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MOLTEN_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "molten",
    version = VERSION,
    about = "Compose a cluster profile into per-node Ignition and platform files",
    after_help = EXAMPLES,
    max_term_width = 80
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compose a profile for a platform and write the bundle to a directory
    #[command(after_help = COMPOSE_EXAMPLES)]
    Compose(ComposeArgs),
    /// Check a profile (and what a platform needs from it) without writing
    #[command(after_help = VALIDATE_EXAMPLES)]
    Validate(ValidateArgs),
    /// Print the JSON schema of the profile format
    #[command(after_help = SCHEMA_EXAMPLES)]
    Schema,
    /// Serve an ipxe or vagrant bundle over HTTP (only files in its SHA256SUMS)
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Create and use the cluster authority (CAs, enrollment tokens)
    #[command(after_help = AUTHORITY_EXAMPLES)]
    Authority(crate::authority::cli::AuthorityArgs),
    /// Print a shell completion script for molten
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// The cluster profile (YAML)
    #[arg(long, value_name = "PATH", default_value = DEFAULT_PROFILE)]
    pub profile: PathBuf,
    /// Treat warnings as errors
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// The platform to compose for
    #[arg(long, value_enum)]
    pub platform: Platform,
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Output directory [default: out/<platform>]; a previous bundle there is replaced
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Ship this local agent binary (mc) instead of the profile's agent
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    #[command(flatten)]
    pub trust: crate::authority::cli::ComposeTrustArgs,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Also check what this platform needs, by composing in memory
    #[arg(long, value_enum)]
    pub platform: Option<Platform>,
    /// Check with this agent binary in place of the profile's agent
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The bundle directory written by `molten compose` [default: out/ipxe; none with
    /// --authority]
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Address and port to listen on
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Also answer node enrollment and renewal over HTTPS from this authority directory
    #[arg(long, value_name = "DIR")]
    pub authority: Option<PathBuf>,
    /// Address and port of the authority's HTTPS listener
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8443")]
    pub tls_listen: SocketAddr,
    /// Another name or address for the HTTPS certificate (repeatable)
    #[arg(long = "san", value_name = "NAME", requires = "authority")]
    pub sans: Vec<String>,
    /// How long node certificates are valid: 90d, 12h, 30m or 600s
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "90d",
        value_parser = crate::authority::serve_cmd::parse_validity
    )]
    pub cert_validity: time::Duration,
    /// Seconds a client has to send a request's headers (slow clients are cut off)
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Seconds a connection may move no byte before it is closed
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// Seconds the server may take to start answering a request
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout: u64,
    /// Open connections at most, all clients together (lowered to fit the open-file limit)
    #[arg(long, value_name = "N", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Open connections at most from one client address
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections_per_client: u64,
    /// MiB of large files served from memory as verified; larger bundles are re-checked chunk
    /// by chunk at every request
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub memory_budget: u64,
}

impl ServeArgs {
    pub fn limits(&self) -> crate::serve::Limits {
        use std::time::Duration;
        crate::serve::Limits {
            header_read_timeout: Duration::from_secs(self.header_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            request_timeout: Duration::from_secs(self.request_timeout),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            max_connections_per_client: usize::try_from(self.max_connections_per_client)
                .unwrap_or(usize::MAX),
            memory_budget: self.memory_budget.saturating_mul(1 << 20),
        }
    }
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Why a command failed; decides the exit status. The message was already printed.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// Exit 2: the input is wrong.
    InvalidInput,
    /// Exit 1: something else went wrong.
    Failed,
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::InvalidInput => 2,
            Failure::Failed => 1,
        }
    }
}

/// Runs a parsed command, printing results to stdout and problems to stderr.
pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Compose(args) => run_compose(&args),
        Command::Validate(args) => run_validate(&args),
        Command::Schema => {
            let schema =
                serde_json::to_string_pretty(&profile::json_schema()).expect("a schema serializes");
            println!("{schema}");
            Ok(())
        }
        Command::Completions(args) => {
            let mut cli = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut cli, "molten", &mut std::io::stdout());
            Ok(())
        }
        Command::Authority(args) => crate::authority::cli::run(&args).map_err(|failure| {
            use crate::authority::cli::AuthorityFailure;
            match failure {
                AuthorityFailure::InvalidInput => Failure::InvalidInput,
                AuthorityFailure::Failed(err) => {
                    eprintln!("error: {err:#}");
                    Failure::Failed
                }
            }
        }),
        Command::Serve(args) => {
            let limits = args.limits();
            if let Err(problem) = limits.check() {
                eprintln!("error: {problem}");
                return Err(Failure::InvalidInput);
            }
            let result = match &args.authority {
                Some(dir) => crate::authority::serve_cmd::run_until_signalled(
                    args.dir.as_deref(),
                    args.listen,
                    limits,
                    &crate::authority::serve_cmd::AuthorityOptions {
                        dir: dir.clone(),
                        tls_listen: args.tls_listen,
                        extra_names: args.sans.clone(),
                        cert_validity: args.cert_validity,
                    },
                ),
                None => crate::serve::run_until_signalled(
                    args.dir.as_deref().unwrap_or(Path::new("out/ipxe")),
                    args.listen,
                    limits,
                ),
            };
            result.map_err(|err| {
                eprintln!("error: {err:#}");
                if crate::serve::is_invalid_bundle(&err)
                    || err
                        .downcast_ref::<crate::authority::serve_cmd::AuthorityInBundle>()
                        .is_some()
                {
                    Failure::InvalidInput
                } else {
                    Failure::Failed
                }
            })
        }
    }
}

fn run_compose(args: &ComposeArgs) -> Result<(), Failure> {
    let loaded = load(&args.profile, Some(args.platform), args.agent.as_deref())?;
    let dest = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("out").join(args.platform.name()));
    let trust = crate::authority::cli::trust_input(
        &args.trust,
        &args.profile.profile,
        &loaded.cluster,
        args.platform,
        &dest,
    )
    .map_err(|failure| match failure {
        crate::authority::cli::AuthorityFailure::InvalidInput => Failure::InvalidInput,
        crate::authority::cli::AuthorityFailure::Failed(err) => {
            eprintln!("error: {err:#}");
            Failure::Failed
        }
    })?;
    let composition = compose(&loaded.cluster, args.platform, &trust)
        .map_err(|err| report_compose_error(&err, &args.profile.profile))?;
    write_bundle(&composition.bundle, &dest).map_err(|err| {
        eprintln!("error: {err:#}");
        Failure::Failed
    })?;
    print!(
        "{}",
        Summary::of(&composition).render(args.platform.name(), &dest)
    );
    Ok(())
}

fn run_validate(args: &ValidateArgs) -> Result<(), Failure> {
    let options = load_options(&args.profile, args.platform, args.agent.as_deref());
    let checked = report_load(
        &args.profile.profile,
        profile::check_file(&args.profile.profile, &options),
    )?;
    let loaded = &checked.loaded;
    if let Some(platform) = args.platform {
        // Nothing is written: an unset agent is a placeholder here, and the nodes register with
        // a throwaway authority in a private temporary directory (the real one is not touched).
        let served = platform
            .target()
            .served_base_url(&loaded.cluster)
            .map_err(|err| report_compose_error(&err, &args.profile.profile))?;
        let scratch =
            crate::trust::scratch_input(&loaded.cluster, served.as_deref()).map_err(|err| {
                eprintln!("error: {err:#}");
                Failure::Failed
            })?;
        if let Err(err) = compose(&loaded.cluster, platform, &scratch.input) {
            return Err(report_compose_error(&err, &args.profile.profile));
        }
    }
    let target = args
        .platform
        .map(|p| format!(" for {p}"))
        .unwrap_or_default();
    println!(
        "{}: valid{target} ({} nodes, {} warnings)",
        args.profile.profile.display(),
        loaded.cluster.nodes.len(),
        loaded.warnings.len()
    );
    if checked.agent_unset {
        println!("note: {}", agent_unset_note(args.platform));
    }
    Ok(())
}

/// What `validate` says about a profile that names no agent: not a problem, but compose needs one.
fn agent_unset_note(platform: Option<Platform>) -> &'static str {
    if platform == Some(Platform::Packet) {
        "the agent is not set; compose for packet needs `agent: {url: ..., sha512: ...}` \
         in the profile"
    } else {
        "the agent is not set; compose needs `agent` in the profile or --agent PATH"
    }
}

/// Loads the profile for compose (an agent is required), printing its warnings or errors.
fn load(
    args: &ProfileArgs,
    platform: Option<Platform>,
    agent: Option<&Path>,
) -> Result<Loaded, Failure> {
    let options = load_options(args, platform, agent);
    report_load(&args.profile, profile::load_file(&args.profile, &options))
}

fn load_options<'a>(
    args: &ProfileArgs,
    platform: Option<Platform>,
    agent: Option<&'a Path>,
) -> LoadOptions<'a> {
    LoadOptions {
        platform: platform.map(Platform::rules),
        agent_override: agent,
        strict: args.strict,
    }
}

/// Prints what a load found to stderr: the warnings of a valid profile, or every problem and a
/// summary line of an invalid one.
fn report_load<T: AsRef<Loaded>>(
    path: &Path,
    result: Result<T, Diagnostics>,
) -> Result<T, Failure> {
    match result {
        Ok(loaded) => {
            print_diagnostics(&loaded.as_ref().warnings);
            Ok(loaded)
        }
        Err(diagnostics) => {
            print_diagnostics(&diagnostics);
            let errors = diagnostics.errors().count();
            let summary = if errors == 0 {
                format!(
                    "{} has warnings and --strict makes them errors",
                    path.display()
                )
            } else {
                format!("{} has {errors} error(s)", path.display())
            };
            eprintln!("molten: {summary}");
            Err(Failure::InvalidInput)
        }
    }
}

/// Prints a compose error; input errors point into the profile like the profile stage's do.
fn report_compose_error(err: &ComposeError, profile: &Path) -> Failure {
    match err {
        ComposeError::Invalid {
            path,
            message,
            line,
            column,
        } => {
            let line_text = (*line > 0)
                .then(|| std::fs::read_to_string(profile).ok())
                .flatten()
                .and_then(|text| text.lines().nth(line - 1).map(str::to_string));
            let diagnostic = Diagnostic {
                severity: Severity::Error,
                path: path.clone(),
                message: message.clone(),
                origin: profile.display().to_string(),
                line: *line,
                column: *column,
                line_text,
            };
            eprintln!("{diagnostic}");
            Failure::InvalidInput
        }
        other => {
            eprintln!("error: {other}");
            Failure::Failed
        }
    }
}

fn print_diagnostics(diagnostics: &Diagnostics) {
    if diagnostics.is_empty() {
        return;
    }
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{diagnostics}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Example lines of a help page: the indented `molten ...` commands.
    fn examples_in(page: &str) -> Vec<&str> {
        page.lines()
            .filter(|l| l.starts_with("  molten "))
            .collect()
    }

    #[test]
    fn help_fits_80_columns() {
        let mut cli = Cli::command();
        let mut pages = vec![("molten".to_string(), cli.render_long_help().to_string())];
        for sub in cli.get_subcommands_mut() {
            let name = sub.get_name().to_string();
            pages.push((name, sub.render_long_help().to_string()));
        }
        for (name, page) in &pages {
            for line in page.lines() {
                assert!(line.chars().count() <= 80, "{name}: too wide: {line:?}");
            }
        }
        assert!(pages[0].1.contains("molten compose --platform vagrant"));
        assert!(pages.len() >= 5, "help of molten and each subcommand");
    }

    #[test]
    fn each_subcommand_shows_its_own_examples_and_the_top_level_all() {
        let mut cli = Cli::command();
        let top = cli.render_long_help().to_string();
        let mut all_examples = Vec::new();
        for sub in cli.get_subcommands_mut() {
            let name = sub.get_name().to_string();
            if name == "help" {
                continue;
            }
            let page = sub.render_long_help().to_string();
            let examples = examples_in(&page);
            assert!(!examples.is_empty(), "{name} --help has no examples");
            let own = format!("  molten {name} ");
            assert!(
                examples.iter().all(|l| l.starts_with(&own)),
                "{name} --help shows another command's examples:\n{page}"
            );
            assert!(page.contains("Exit status: 0 success"), "{name}: {page}");
            all_examples.extend(examples.into_iter().map(str::to_string));
        }
        let top_examples = examples_in(&top);
        assert_eq!(top_examples, all_examples, "molten --help lists them all");
    }

    #[test]
    fn the_version_names_the_commit_built_from() {
        let head = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8(out.stdout).unwrap().trim().to_string());
        let commit = head.as_deref().unwrap_or("unknown");
        let expected = format!("{} (commit {commit})", env!("CARGO_PKG_VERSION"));
        assert_eq!(VERSION, expected);
        let shown = Cli::command().render_version();
        assert_eq!(shown.trim(), format!("molten {expected}"));
    }

    #[test]
    fn completions_cover_every_subcommand() {
        let mut cli = Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut cli, "molten", &mut script);
        let script = String::from_utf8(script).unwrap();
        assert!(script.contains("complete -F _molten"), "{script}");
        for sub in [
            "compose",
            "validate",
            "schema",
            "serve",
            "authority",
            "completions",
        ] {
            assert!(
                script.contains(&format!("molten__subcmd__{sub}")),
                "{sub}: {script}"
            );
        }
        let parsed = Cli::try_parse_from(["molten", "completions", "zsh"]).unwrap();
        assert!(matches!(parsed.command, Command::Completions(_)));
        assert!(Cli::try_parse_from(["molten", "completions", "tcsh"]).is_err());
    }

    /// docs/man is generated from this command line; `MOLTEN_BLESS=1` rewrites it.
    #[test]
    fn the_man_pages_in_docs_are_current() {
        molten_testkit::man_pages::check_current(Cli::command(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn compose_defaults() {
        let cli = Cli::try_parse_from(["molten", "compose", "--platform", "ipxe"]).unwrap();
        let Command::Compose(args) = cli.command else {
            panic!("not compose")
        };
        assert_eq!(args.platform, Platform::Ipxe);
        assert_eq!(args.profile.profile, Path::new("profiles/dev.yaml"));
        assert!(args.out.is_none() && args.agent.is_none() && !args.profile.strict);
        assert!(Cli::try_parse_from(["molten", "compose", "--platform", "aws"]).is_err());
    }
}
