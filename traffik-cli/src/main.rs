//! `traffik`: see a client's budget on a store and change it, and replay
//! access logs against a rules file. `traffik --help` lists the commands;
//! the exit codes are in the library's docs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use traffik_cli::admin::{self, Action, Source, Target};
use traffik_cli::replay::{self, Report};
use traffik_cli::{Exit, Failure};

#[derive(Parser)]
#[command(name = "traffik", version, about = "See and steer traffik rate limits")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a client's budget without charging it.
    Peek(TargetArgs),
    /// Give a client its whole budget back.
    Reset(TargetArgs),
    /// Deny a client for a while (its throttle needs a penalty).
    Block {
        #[command(flatten)]
        target: TargetArgs,
        /// How long, such as 30m or 1h.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Lift a client's block and forget its offences.
    Unblock(TargetArgs),
    /// List the keys denied most (the in-memory store, in its own process).
    Hot {
        /// The store URL.
        #[arg(long)]
        backend: String,
    },
    /// Check a rules file and list its throttles.
    Check {
        /// The rules file.
        #[arg(long)]
        rules: PathBuf,
    },
    /// Replay access logs against a rules file: what would it have denied?
    Replay(ReplayArgs),
}

#[derive(Args)]
struct TargetArgs {
    /// The rules file that defines the throttle (its keys are built as the
    /// axum layer builds them).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// The store URL (with --rules: in place of the file's backends).
    #[arg(long)]
    backend: Option<String>,
    /// The throttle's name.
    #[arg(long)]
    throttle: String,
    /// Without --rules: the throttle's rate, such as 5/15min.
    #[arg(long)]
    rate: Option<String>,
    /// Without --rules: its strategy (default gcra).
    #[arg(long)]
    strategy: Option<String>,
    /// Without --rules: its namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// The route template, for a rule keyed per route (such as /login).
    #[arg(long)]
    route: Option<String>,
    /// The method, for a rule keyed per method and route.
    #[arg(long)]
    method: Option<String>,
    /// The client is an IP address even where the rules read a header.
    #[arg(long)]
    ip: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// The client: an IP address or a header's value as the rules identify
    /// clients; without --rules, the identity as your code passes it.
    client: String,
}

#[derive(Args)]
struct ReplayArgs {
    /// The rules file.
    #[arg(long)]
    rules: PathBuf,
    /// The application's route templates, for rules keyed per route
    /// (repeat: --route /items/{id} --route /login).
    #[arg(long = "route")]
    routes: Vec<String>,
    /// Identities to list per rule.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Minutes with denials to print (all of them are in --json).
    #[arg(long, default_value_t = 30)]
    minutes: usize,
    /// Draw allowed and denied per minute per rule into this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// The logs: nginx or Apache combined, or JSON lines (`-`: standard input).
    #[arg(required = true)]
    logs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("traffik: {failure}");
            ExitCode::from(failure.exit as u8)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::new(Exit::Failed, format!("a runtime: {error}")))
}

fn target(args: TargetArgs) -> Result<(Target, bool), Failure> {
    let source = match (args.rules, args.backend, args.rate) {
        (Some(_), _, Some(_)) => {
            return Err(Failure::new(
                Exit::Usage,
                "--rate defines a throttle without a rules file: give --rules or --rate, not both",
            ));
        }
        (Some(path), backend, None) => Source::Rules { path, backend },
        (None, Some(backend), Some(rate)) => Source::Flags {
            backend,
            rate,
            strategy: args.strategy,
            namespace: args.namespace,
        },
        (None, _, _) => {
            return Err(Failure::new(
                Exit::Usage,
                "name the throttle's definition: --rules <file>, or --backend <url> --rate <rate>",
            ));
        }
    };
    Ok((
        Target {
            source,
            throttle: args.throttle,
            client: args.client,
            ip: args.ip,
            route: args.route,
            method: args.method,
        },
        args.json,
    ))
}

fn json(value: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string_pretty(value)
        .map(|text| text + "\n")
        .map_err(|error| Failure::new(Exit::Failed, format!("JSON: {error}")))
}

fn run(command: Command) -> Result<String, Failure> {
    let (args, action) = match command {
        Command::Peek(args) => (args, Action::Peek),
        Command::Reset(args) => (args, Action::Reset),
        Command::Block { target, duration } => (target, Action::Block(duration)),
        Command::Unblock(args) => (args, Action::Unblock),
        Command::Hot { backend } => return hot(&backend),
        Command::Check { rules } => return check(&rules),
        Command::Replay(args) => return replay(args),
    };
    let (target, as_json) = target(args)?;
    let report = runtime()?.block_on(admin::run(&target, action))?;
    if as_json {
        json(&report)
    } else {
        Ok(report.table())
    }
}

fn hot(backend: &str) -> Result<String, Failure> {
    let kind = backend.split("://").next().unwrap_or_default();
    let message = match kind {
        "memory" => {
            "an in-memory store lives in its application's process, so no other process can \
             list its keys: call MemoryBackend::hottest there (the demo serves it at /admin/hot)"
        }
        "redis" | "rediss" | "redis+unix" | "redis+cluster" | "redis+sentinel" | "memcached"
        | "memcached+unix" => {
            "this store cannot list its hottest keys cheaply (it would scan every key): use the \
             metrics (traffik_decisions_total by throttle) or `traffik replay` on its logs"
        }
        _ => {
            return Err(Failure::new(
                Exit::Config,
                format!(
                    "backend {:?}: not a store URL",
                    backend.get(..64).unwrap_or(backend)
                ),
            ));
        }
    };
    Err(Failure::new(Exit::Usage, message))
}

fn check(rules: &std::path::Path) -> Result<String, Failure> {
    let loaded = runtime()?
        .block_on(traffik_axum::config::Rules::load(rules))
        .map_err(|error| Failure::new(Exit::Config, error.to_string()))?;
    let mut out = format!("{}: valid\n", rules.display());
    for name in loaded.throttles() {
        let admin = loaded
            .admin(&name)
            .map_err(|error| Failure::from_error("the throttle", &error))?;
        out.push_str(&format!(
            "  {name}: {}{}\n",
            admin.rate(),
            if admin.has_penalty() {
                ", with a penalty"
            } else {
                ""
            }
        ));
    }
    Ok(out)
}

fn replay(args: ReplayArgs) -> Result<String, Failure> {
    use std::io::IsTerminal;
    let options = replay::Options {
        rules: args.rules,
        logs: args.logs,
        routes: args.routes,
        top: args.top,
        plot: args.plot.clone(),
        progress: std::io::stderr().is_terminal(),
    };
    let report = replay::replay(&options)?;
    if args.json {
        return json(&report);
    }
    let mut out = summary(&report, args.minutes);
    if let Some(plot) = args.plot {
        out.push_str(&format!("\nplot: {}\n", plot.display()));
    }
    Ok(out)
}

fn utc(ms: u64) -> String {
    let seconds = i64::try_from(ms / 1_000).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|at| {
            at.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]"
            ))
            .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Rows of cells as aligned columns.
fn columns(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..width)
        .map(|at| {
            rows.iter()
                .filter_map(|r| r.get(at))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn summary(report: &Report, minutes: usize) -> String {
    let mut out = format!(
        "replayed {} lines in {:.1} s ({:.0} lines/min)",
        report.lines,
        report.seconds,
        report.lines_per_minute()
    );
    if let Some((first, last)) = report.span_ms {
        out.push_str(&format!(", {} to {} UTC", utc(first), utc(last)));
    }
    out.push('\n');
    let skipped: u64 = report.skipped.values().sum();
    if skipped > 0 {
        let (line, why) = report.first_skipped.clone().unwrap_or_default();
        out.push_str(&format!(
            "skipped {skipped} unreadable lines (the first, line {line}: {why})\n"
        ));
    }
    out.push_str(&format!(
        "{} requests would have been answered 429\n\n",
        report.rejected
    ));
    let mut rows = vec![
        [
            "rule",
            "decided",
            "allowed",
            "denied",
            "shadow-denied",
            "denied %",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for rule in &report.rules {
        let share = if rule.decided == 0 {
            0.0
        } else {
            (rule.denied + rule.shadow_denied) as f64 * 100.0 / rule.decided as f64
        };
        rows.push(vec![
            rule.throttle.clone(),
            rule.decided.to_string(),
            rule.allowed.to_string(),
            rule.denied.to_string(),
            rule.shadow_denied.to_string(),
            format!("{share:.2}%"),
        ]);
    }
    out.push_str(&columns(&rows));
    let mut top = vec![["rule", "identity", "denied"].map(String::from).to_vec()];
    for rule in &report.rules {
        for denied in &rule.top_denied {
            top.push(vec![
                rule.throttle.clone(),
                denied.identity.clone(),
                denied.denied.to_string(),
            ]);
        }
    }
    if top.len() > 1 {
        out.push_str("\ntop denied identities\n");
        out.push_str(&columns(&top));
    }
    let with_denials: Vec<_> = report
        .minutes
        .iter()
        .filter(|(_, rules)| rules.iter().any(|m| m.denied > 0))
        .collect();
    if !with_denials.is_empty() {
        out.push_str(&format!(
            "\ndenials per minute ({} minutes with denials{})\n",
            with_denials.len(),
            if with_denials.len() > minutes {
                format!(", the first {minutes}; all in --json and --plot")
            } else {
                String::new()
            }
        ));
        let mut rows = vec![
            std::iter::once("minute (UTC)".to_owned())
                .chain(report.rules.iter().map(|r| r.throttle.clone()))
                .collect::<Vec<_>>(),
        ];
        for (minute, rules) in with_denials.into_iter().take(minutes) {
            rows.push(
                std::iter::once(utc(*minute))
                    .chain(rules.iter().map(|m| m.denied.to_string()))
                    .collect(),
            );
        }
        out.push_str(&columns(&rows));
    }
    out
}
