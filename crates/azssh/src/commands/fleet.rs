//! `azssh fleet SCRIPT|RUNBOOK`: choose the VMs, split by shard, reconcile with the journal,
//! run the script once per VM (`fleet::scheduler`), then print the summary and the results.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::cli::{FleetArgs, GlobalArgs};
use crate::error::AppError;
use crate::fleet::FleetError;
use crate::fleet::journal::{self, Entry, ErrorInfo, Journal, ResumeAction, Status};
use crate::fleet::progress::{self, Counters};
use crate::fleet::report::Report;
use crate::fleet::scheduler::{self, Controls, FleetJob};
use crate::fleet::shard::Shard;
use crate::fleet::targets::{self, SelectError, Selection, Target};
use crate::output::{self, OutputFormat};
use crate::script::bridge::{Bridge, Cancel};
use crate::script::context::{ScriptContext, Settings};
use crate::script::engine::{self, Limits};
use crate::script::error::Diagnostic;
use crate::script::run::Script;
use azssh_core::error::kind;

pub async fn fleet(global: &GlobalArgs, args: FleetArgs) -> Result<(), AppError> {
    let script = super::load_script(&args.script)?;
    run_fleet(global, args, script, None).await
}

/// Adds lines to a fleet run's summary from its report (the audit groups VMs by drift).
pub type ExtraSummary = fn(&Report) -> Option<String>;

/// A fleet run of `script` (a verb passes its bundled runbook, which `args.script` only names).
pub async fn run_fleet(
    global: &GlobalArgs,
    args: FleetArgs,
    script: Script,
    extra_summary: Option<ExtraSummary>,
) -> Result<(), AppError> {
    let usage = |e: FleetError| AppError::usage_from(&e);
    if (args.run.resume || args.run.retry_failed) && args.run.journal.is_none() {
        return Err(usage(FleetError::ResumeWithoutJournal));
    }
    if let Some(p) = args.run.max_fail
        && !(0.0..=100.0).contains(&p)
    {
        return Err(usage(FleetError::BadMaxFail(p)));
    }
    if args.run.concurrency == 0 {
        return Err(AppError::usage(
            "`--concurrency` must be at least 1",
            Some("e.g. `--concurrency 32`".into()),
        ));
    }
    let script_args = super::parse_args(&args.args)?;
    let index_env = std::env::var("JOB_COMPLETION_INDEX").ok();
    let shard = args
        .run
        .shard
        .as_deref()
        .map(|s| Shard::parse(s, index_env.as_deref()))
        .transpose()
        .map_err(usage)?;
    let selection = selection(&args).map_err(usage)?;
    if selection.is_empty() {
        return Err(usage(FleetError::NoSelector));
    }
    let settings = super::settings(global);
    let limits = super::limits(&args.limits);
    let ast = compile(&script, &settings, &limits)?;
    let arm =
        crate::script::context::arm_client(&settings).map_err(|e| AppError::usage_from(&e))?;
    // One pacer for every VM's calls: requests wait for ARM's tokens instead of drawing 429s.
    // Shards share the subscription's buckets: each spends freely while ARM reports plenty
    // left, and its 1/N share when the count runs low (fleet::pacing).
    arm.budget()
        .set_pacer(Arc::new(crate::fleet::pacing::TokenPacer::for_shards(
            shard.map_or(1, |s| s.count),
        )));
    let inventory = crate::fleet::inventory::load(&arm).await;

    let mut all = targets::select(&arm, &selection, inventory.as_deref())
        .await
        .map_err(|e| match e {
            SelectError::Usage(u) => usage(u),
            SelectError::Azure(a) => AppError::failed(&a),
        })?;
    if let Some(shard) = shard {
        all.retain(|t| shard.owns(t));
    }
    // The journal is locked before it is read, so the plan comes from a journal no other run
    // is still appending to (a dry run only reads).
    let journal = match &args.run.journal {
        Some(p) if !args.dry_run => Some(Arc::new(
            Journal::open(p, args.run.resume).map_err(journal_error)?,
        )),
        _ => None,
    };
    let previous = match (&args.run.journal, args.run.resume) {
        (Some(path), true) => load_journal(path)?,
        _ => HashMap::new(),
    };
    let plan = Plan::new(&all, &previous, args.run.retry_failed);
    if args.dry_run {
        output::print_value(&plan.dry_run_rows(), OutputFormat::resolve(global.output));
        return Ok(());
    }
    let interrupted = plan
        .mark_interrupted(journal.as_deref())
        .map_err(journal_error)?;

    let job = Arc::new(FleetJob {
        script,
        ast: Arc::new(ast),
        args: script_args,
        settings,
        limits,
        arm: arm.clone(),
        concurrency: args.run.concurrency,
        timeout: args.run.timeout,
        retries: args.run.retries,
        max_fail_percent: args.run.max_fail,
        inventory: Arc::new(crate::fleet::inventory::RunInventory::new(
            crate::fleet::inventory::index(inventory, &plan.to_run),
        )),
    });
    let counters = Arc::new(Counters::default());
    let controls = Controls::default();
    let watcher = tokio::spawn(watch_ctrl_c(controls.clone(), args.run.grace));
    let drawn = tokio_util::sync::CancellationToken::new();
    let started = std::time::Instant::now();
    let bar = progress::spawn(plan.to_run.len() as u64, counters.clone(), drawn.clone());
    let outcome = scheduler::run(job, plan.to_run.clone(), journal, counters, controls).await;
    drawn.cancel();
    let _ = bar.await;
    watcher.abort();

    let report = plan.report(
        outcome,
        interrupted,
        started.elapsed(),
        arm.budget().snapshot(),
    );
    output::status(&report.summary());
    if let Some(extra) = extra_summary.and_then(|f| f(&report)) {
        output::status(&extra);
    }
    let format = OutputFormat::resolve(global.output);
    output::data(&report.render(format));
    if report.all_ok() && report.stopped.is_none() {
        return Ok(());
    }
    let failed = report.failed() + report.not_started.len();
    let total = report.entries.len() + report.not_started.len();
    Err(AppError::Failed(Box::new(Diagnostic::plain(
        kind::fleet::FAILED,
        match &report.stopped {
            Some(why) => format!("{failed} of {total} VMs failed or did not run ({why})"),
            None => format!("{failed} of {total} VMs failed"),
        },
        Some(match &args.run.journal {
            Some(p) => format!(
                "rerun with `--journal {} --resume` to continue, adding `--retry-failed` to retry the failures",
                p.display()
            ),
            None => "pass `--journal FILE` to be able to resume or retry only the failures".into(),
        }),
    ))))
}

/// A journal in the way of a fresh run is a usage error (exit 2); one that cannot be locked or
/// written stops the run before any VM starts (exit 1).
fn journal_error(e: FleetError) -> AppError {
    match e {
        FleetError::JournalExists { .. } => AppError::usage_from(&e),
        _ => AppError::failed(&e),
    }
}

fn selection(args: &FleetArgs) -> Result<Selection, FleetError> {
    let ids = match &args.run.targets {
        Some(path) => {
            let shown = path.display().to_string();
            let text =
                crate::local_file::read_text(path, crate::local_file::cap::TARGETS, "targets file")
                    .map_err(|e| FleetError::TargetsFile {
                        path: shown.clone(),
                        reason: e.to_string(),
                    })?;
            targets::parse_targets_file(&shown, &text)?
        }
        None => Vec::new(),
    };
    Ok(Selection {
        resource_groups: args.run.resource_groups.clone(),
        tags: targets::parse_tags(&args.run.tags)?,
        query: args.run.query.clone(),
        ids,
        all: args.run.all,
    })
}

/// Compiles once before any VM starts, so a syntax error costs no Azure call.
fn compile(script: &Script, settings: &Settings, limits: &Limits) -> Result<rhai::AST, AppError> {
    let bridge = Bridge::new(tokio::runtime::Handle::current(), Cancel::new(None));
    let ctx = Arc::new(ScriptContext::new(bridge, settings.clone(), limits.clone()));
    let engine = engine::build(&ctx);
    let mut ast = engine.compile(&script.text).map_err(|e| {
        let sources = ScriptSource(script);
        AppError::Failed(Box::new(crate::script::error::from_parse(
            &e,
            &script.name,
            &sources,
        )))
    })?;
    ast.set_source(script.name.as_str());
    Ok(ast)
}

struct ScriptSource<'a>(&'a Script);

impl crate::script::error::SourceLookup for ScriptSource<'_> {
    fn source_text(&self, name: &str) -> Option<String> {
        (name == self.0.name).then(|| self.0.text.clone())
    }
}

fn load_journal(path: &Path) -> Result<HashMap<String, Entry>, AppError> {
    let (entries, torn) = journal::load(path).map_err(journal_error)?;
    if torn > 0 {
        output::log(
            output::Level::Warn,
            &format!(
                "skipped {torn} unreadable line(s) of `{}` (a run cut off mid-write)",
                path.display()
            ),
        );
    }
    Ok(entries)
}

/// What this run does with each target, given the journal.
struct Plan {
    all: Vec<Target>,
    to_run: Vec<Target>,
    /// Journal entries kept as they are (done, or failed without `--retry-failed`).
    kept: HashMap<String, Entry>,
    interrupted: Vec<Target>,
}

impl Plan {
    fn new(all: &[Target], previous: &HashMap<String, Entry>, retry_failed: bool) -> Plan {
        let mut plan = Plan {
            all: all.to_vec(),
            to_run: Vec::new(),
            kept: HashMap::new(),
            interrupted: Vec::new(),
        };
        for t in all {
            let last = previous.get(&t.key());
            match journal::resume_action(last, retry_failed) {
                ResumeAction::Run => plan.to_run.push(t.clone()),
                ResumeAction::Skip => {
                    if let Some(e) = last {
                        plan.kept.insert(t.key(), e.clone());
                    }
                }
                ResumeAction::MarkInterrupted => plan.interrupted.push(t.clone()),
            }
        }
        plan
    }

    fn dry_run_rows(&self) -> Value {
        let action = |t: &Target| {
            if self.kept.contains_key(&t.key()) {
                "skip (in journal)"
            } else if self.interrupted.iter().any(|i| i.key() == t.key()) {
                "skip (interrupted)"
            } else {
                "run"
            }
        };
        Value::Array(
            self.all
                .iter()
                .map(|t| json!({"name": t.name, "resource_group": t.resource_group, "action": action(t), "id": t.id}))
                .collect(),
        )
    }

    /// Journals VMs a killed run left `running`: their scripts may have partly run, so they are
    /// failed, not rerun (`--retry-failed` reruns them).
    fn mark_interrupted(&self, journal: Option<&Journal>) -> Result<Vec<Entry>, FleetError> {
        let mut out = Vec::new();
        for t in &self.interrupted {
            let e = Entry {
                id: t.id.clone(),
                name: t.name.clone(),
                status: Status::Failed,
                result: None,
                error: Some(ErrorInfo {
                    kind: kind::fleet::INTERRUPTED.into(),
                    message: "an earlier run stopped while this VM's script was running; it may have partly run".into(),
                    hint: Some("check the VM, then rerun it with `--resume --retry-failed`".into()),
                }),
                attempts: 0,
                duration_ms: 0,
                finished_at: journal::now_rfc3339(),
            };
            if let Some(j) = journal {
                j.append(&e)?;
            }
            out.push(e);
        }
        Ok(out)
    }

    /// Every target's last word, in target order.
    fn report(
        &self,
        outcome: scheduler::Outcome,
        interrupted: Vec<Entry>,
        elapsed: std::time::Duration,
        budget: crate::azure::budget::BudgetSnapshot,
    ) -> Report {
        let mut by_key: HashMap<String, Entry> = self.kept.clone();
        let resumed = by_key.len();
        for e in interrupted.into_iter().chain(outcome.entries) {
            by_key.insert(e.id.to_ascii_lowercase(), e);
        }
        let entries = self
            .all
            .iter()
            .filter_map(|t| by_key.remove(&t.key()))
            .collect();
        Report {
            entries,
            not_started: outcome.not_started,
            resumed,
            stopped: outcome.stopped,
            elapsed,
            budget,
        }
    }
}

/// First Ctrl-C: start no new VMs, give running ones `grace` to finish. Second (or the grace
/// running out): cancel them. The summary and journal are written either way.
async fn watch_ctrl_c(controls: Controls, grace: std::time::Duration) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    output::log(
        output::Level::Warn,
        &format!(
            "interrupted: starting no new VMs; running ones get {} to finish (Ctrl-C again cancels them)",
            humantime::format_duration(grace)
        ),
    );
    controls.stop("interrupted (Ctrl-C)");
    tokio::select! {
        _ = tokio::time::sleep(grace) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    output::log(output::Level::Warn, "cancelling the VMs still running");
    controls.abort.cancel();
}
