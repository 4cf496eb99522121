//! `sockit lab [NAME|all] [--json] [--rounds N]`: lists the experiments of [`sockit::lab`],
//! runs one or all of them off the async runtime, and prints each outcome for a person or
//! the measurements as one JSON document.

use anyhow::{Context, Result};
use clap::Args;
use clap::builder::{PossibleValuesParser, RangedU64ValueParser};

use sockit::lab::{DEFAULT_ROUNDS, EXPERIMENTS, Experiment, Options, Outcome};

/// Where the text output wraps.
const WIDTH: usize = 100;

/// `sockit lab` options.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// The experiment to run, or `all`; without one, the experiments are listed.
    #[arg(value_parser = names())]
    pub name: Option<String>,
    /// Print the measurements as one JSON document (for `all`, an object keyed by name).
    #[arg(long)]
    pub json: bool,
    /// Request/reply round trips per mode in `nagle`.
    #[arg(long, default_value_t = DEFAULT_ROUNDS, value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub rounds: usize,
}

fn names() -> PossibleValuesParser {
    PossibleValuesParser::new(EXPERIMENTS.iter().map(|e| e.name).chain(["all"]))
}

/// Runs `sockit lab`.
///
/// # Errors
/// An experiment that could not run (a socket call failed, or a wait ran past its bound).
pub async fn run(args: LabArgs) -> Result<()> {
    let Some(name) = args.name else {
        list();
        return Ok(());
    };
    let options = Options {
        rounds: args.rounds,
    };
    let chosen: Vec<&'static Experiment> = if name == "all" {
        EXPERIMENTS.iter().collect()
    } else {
        EXPERIMENTS.iter().filter(|e| e.name == name).collect()
    };
    let mut outcomes = Vec::with_capacity(chosen.len());
    for (i, experiment) in chosen.into_iter().enumerate() {
        // The experiments block on std sockets: keep them off the runtime's workers.
        let outcome = tokio::task::spawn_blocking(move || experiment.run(&options))
            .await
            .context("the experiment's thread")?
            .with_context(|| format!("lab {}", experiment.name))?;
        if !args.json {
            if i > 0 {
                out!("");
            }
            print(experiment, &outcome);
        }
        outcomes.push(outcome);
    }
    if args.json {
        let json = match outcomes.as_slice() {
            [one] if name != "all" => serde_json::to_string_pretty(one)?,
            all => serde_json::to_string_pretty(&ByName(all))?,
        };
        out!("{json}");
    }
    Ok(())
}

/// Outcomes as one JSON object keyed by name, in the order they ran.
struct ByName<'a>(&'a [Outcome]);

impl serde::Serialize for ByName<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|o| (o.name, o)))
    }
}

fn list() {
    out!("sockit lab NAME runs one experiment on 127.0.0.1 and reports what this kernel did:");
    let width = EXPERIMENTS.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for e in &EXPERIMENTS {
        out!("  {:<width$}  {}", e.name, e.about);
    }
    out!("  {:<width$}  every experiment in turn", "all");
    out!("--json prints the measurements for scripts; --rounds N sets nagle's round trips.");
}

fn print(experiment: &Experiment, o: &Outcome) {
    out!("== {}: {}", o.name, experiment.about);
    block("did", std::slice::from_ref(&o.did));
    block("saw", &o.happened);
    block("seed", &[o.seed.to_string()]);
    out!(
        "  {:<5} {}",
        "shown",
        if o.shown {
            "yes, on this kernel"
        } else {
            "no, on this kernel (see above)"
        }
    );
}

/// Prints `lines` after a label, each wrapped at [`WIDTH`] and indented under the label.
fn block(label: &str, lines: &[String]) {
    let mut first = true;
    for line in lines {
        for row in wrap(line, WIDTH - 8) {
            out!("  {:<5} {row}", if first { label } else { "" });
            first = false;
        }
    }
}

/// Greedy word wrap; continuation rows are indented two spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let (mut rows, mut row) = (Vec::new(), String::new());
    for word in text.split_whitespace() {
        if !row.is_empty() && row.chars().count() + 1 + word.chars().count() > width {
            rows.push(std::mem::replace(&mut row, format!("  {word}")));
        } else {
            if !row.is_empty() {
                row.push(' ');
            }
            row.push_str(word);
        }
    }
    rows.push(row);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_on_words_and_indents_continuations() {
        assert_eq!(wrap("one two three", 7), ["one two", "  three"]);
        assert_eq!(wrap("short", 80), ["short"]);
    }
}
